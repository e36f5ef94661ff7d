"""`beliefscope audit LOGDIR`: run the audit's checks on checkpoints of a log dir.

The audited episodes (an even spread of `--episodes` of them) and checkpoints are ingested
first through the ingest service (their filter traces, skipped when already stored), so every
finding links to an episode the dashboard can open; the report is stored as each checkpoint's
`audit` probe summary and printed. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from beliefscope.access import terminal_user
from beliefscope.errors import BadInputError
from beliefscope.replay.base import EpisodeRef
from beliefscope.rssm import formats as ckpt_formats
from beliefscope.rssm.formats import CheckpointRef
from beliefscope.store.engine import Store, open_store
from beliefscope.values.audit import PROBE, AuditReport
from beliefscope.values.page import MAX_LIMIT
from ingest import sources
from ingest.audit import audit
from ingest.cli import add_source_arguments, set_up_torch
from ingest.progress import Progress
from ingest.request import IngestRequest
from ingest.service import Ingestor
from ingest.stored import load_episode, load_model

MARKS = {"pass": "pass", "warn": "WARN", "fail": "FAIL", "inconclusive": "n/a "}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logdir", type=Path, metavar="LOGDIR", help="training log dir")
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="WHICH",
        help="`latest` (default), `all`, a training step, or a checkpoint's file or folder "
        "(repeatable)",
    )
    parser.add_argument(
        "--episodes", type=int, default=16, metavar="N", help="episodes to audit (default 16)"
    )
    add_source_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")


def choose_checkpoints(
    refs: list[CheckpointRef], which: list[str], logdir: Path
) -> list[CheckpointRef]:
    """The checkpoints `--checkpoint` names, in training order."""
    if not refs:
        raise BadInputError("no checkpoints found", path=logdir)
    ordered = sorted(refs, key=lambda r: (r.step is not None, r.step or 0, str(r.path)))
    chosen: dict[Path, CheckpointRef] = {}
    for spec in which or ["latest"]:
        if spec == "latest":
            found = [ordered[-1]]
        elif spec == "all":
            found = ordered
        elif spec.isdigit():
            found = [r for r in ordered if r.step == int(spec)]
        else:
            path = Path(spec).resolve()
            found = [r for r in ordered if r.path.resolve() == path]
        if not found:
            steps = ", ".join(str(r.step) for r in ordered if r.step is not None) or "none"
            raise BadInputError(
                f"--checkpoint {spec}: no such checkpoint (steps found: {steps})", path=logdir
            )
        chosen.update({r.path: r for r in found})
    return sorted(chosen.values(), key=ordered.index)


def sample_episodes(refs: list[EpisodeRef], count: int) -> list[EpisodeRef]:
    """An even spread of `count` episodes (by key), so a replay written in order (early and
    late in training, train and eval) is sampled across."""
    if count < 1:
        raise BadInputError(f"--episodes must be at least 1, got {count}")
    usable = sorted((r for r in refs if r.length >= 2), key=lambda r: r.key)
    if not usable:
        raise BadInputError("no episodes with two or more steps found")
    index = np.unique(np.linspace(0, len(usable) - 1, min(count, len(usable))).round())
    return [usable[int(i)] for i in index]


@dataclass(frozen=True)
class Audited:
    checkpoint_id: int
    report: AuditReport


def run_audit(
    store: Store,
    logdir: Path,
    *,
    which: Sequence[str] = (),
    episodes: int = 16,
    replay: tuple[Path, ...] = (),
    run_name: str | None = None,
    checkpoint_format: str | None = None,
    device: str = "cpu",
) -> list[Audited]:
    """Ingest the chosen checkpoints x sampled episodes, audit each checkpoint, store and
    return the reports."""
    refs = ckpt_formats.discover(logdir, checkpoint_format)
    checkpoints = choose_checkpoints(refs, list(which), logdir)
    found = sources.list_episodes(sources.replay_dirs(logdir, list(replay)))
    sample = sample_episodes(found, episodes)
    request = IngestRequest(
        logdir=logdir,
        replay=tuple(replay),
        run_name=run_name,
        device=device,
        checkpoint_format=checkpoint_format,
        checkpoints=tuple(r.path for r in checkpoints),
        episode_keys=tuple(r.key for r in sample),
    )
    ingestor = Ingestor(store, request)
    job = ingestor.submit(started_by=terminal_user())
    with Progress(f"audit {request.name}: ingest") as progress:
        report = ingestor.run(job.id, progress)
    if report.errors and not (report.written or report.skipped):
        raise BadInputError(f"nothing could be ingested: {report.errors[0]}", path=logdir)
    run_id = store.queries.find_run(name=request.name).id
    keys = {r.key for r in sample}
    infos = [
        e
        for e in store.queries.list_episodes(run_id=run_id, limit=MAX_LIMIT).items
        if e.key in keys
    ]
    loaded = [load_episode(e) for e in infos]
    ids = {e.key: e.id for e in infos}
    out = []
    for ref in checkpoints:
        files = ckpt_formats.get_format(ref.format).content_files(ref)
        checkpoint_id = store.writer.find_checkpoint(
            run_id, content_hash=sources.content_hash(files)
        )
        if checkpoint_id is None:  # its load error is on the job
            raise BadInputError(f"checkpoint could not be loaded: {report.errors}", path=ref.path)
        ckpt = store.queries.get_checkpoint(checkpoint_id=checkpoint_id)
        result = audit(load_model(ckpt, device), loaded, device).with_episode_ids(ids)
        store.reviews.save_probe_summary(checkpoint_id=ckpt.id, probe=PROBE, data=result.to_dict())
        out.append(Audited(ckpt.id, result))
    return out


def format_report(audited: Audited, run: str) -> str:
    r = audited.report
    step = "?" if r.step is None else r.step
    lines = [
        f"audit of {run} at step {step} ({r.family}), {len(r.episodes)} episodes, {r.steps} steps, "
        f"{r.seconds:.1f} s: {r.status.upper()}"
    ]
    for c in r.checks:
        lines.append(
            f"  {MARKS[c.status]}  {c.title}" + (f": {c.corruption}" if c.corruption else "")
        )
        lines.append(f"        {c.finding}")
        for w in c.where[:3]:
            link = w.link(audited.checkpoint_id) or f"{w.episode} t={w.t}"
            lines.append(f"        open {link}" + (f"  ({w.note})" if w.note else ""))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    set_up_torch(args)
    store = open_store(args.store, create=True)
    try:
        audited = run_audit(
            store,
            args.logdir,
            which=args.checkpoint,
            episodes=args.episodes,
            replay=tuple(args.replay),
            run_name=args.run_name,
            checkpoint_format=args.checkpoint_format,
            device=args.device,
        )
    finally:
        store.close()
    name = args.run_name or args.logdir.resolve().name
    if args.json:
        data = [{"checkpoint_id": a.checkpoint_id, **a.report.to_dict()} for a in audited]
        print(json.dumps(data, indent=2))
    else:
        print("\n\n".join(format_report(a, name) for a in audited))
    return 1 if any(a.report.status == "fail" for a in audited) else 0
