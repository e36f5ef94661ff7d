"""Planning an ingest: which checkpoint versions and episodes a log dir holds, which units
(checkpoint, trace variant, batch of episodes) are not stored yet, and registering the run,
its checkpoints and their snapshots on the way. Loads each checkpoint once, to check it; runs
no model over episodes (that is `units`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from beliefscope.config import get_settings
from beliefscope.errors import BadInputError, BeliefscopeError
from beliefscope.replay.base import EpisodeRef, ReplayFormat
from beliefscope.replay.base import detect_format as replay_format_for
from beliefscope.replay.base import searched as replay_searched
from beliefscope.rssm import formats as ckpt_formats
from beliefscope.store.engine import Store
from beliefscope.store.writer import StoreWriter
from ingest import sources
from ingest.compute import HEADS, model_heads, trace_metrics
from ingest.request import IngestReport, IngestRequest, ProgressSink
from ingest.units import WorkUnit
from ingest.variants import Variant, parse

SnapshotCache = dict[tuple[tuple[str, int, int], ...], "sources.Snapshot | str"]
"""(file, mtime, size) of a checkpoint's files -> its snapshot, or the reason it failed:
lets a watcher skip re-hashing unchanged files and re-trying a version that doesn't load."""


@dataclass(frozen=True)
class Refusal:
    """A file found and refused on the way (recorded as a job error once the job exists)."""

    unit: str
    file: Path
    reason: str


@dataclass
class Found:
    """What a log dir holds to ingest: checkpoints, episodes, and the files refused."""

    checkpoints: list[ckpt_formats.CheckpointRef] = field(default_factory=list)
    episodes: list[EpisodeRef] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    replay_dirs: list[tuple[Path, ReplayFormat]] = field(default_factory=list)

    def nothing(self, request: IngestRequest) -> str | None:
        """Why there is nothing to ingest (no checkpoint or no episode file at all, not even
        a refused one), naming the directory and what was searched; None otherwise."""
        logdir, fmt = request.logdir, request.checkpoint_format
        if not self.checkpoints and not any(r.unit.startswith("checkpoint") for r in self.refused):
            return (
                f"{logdir}: no checkpoints found; searched every folder below it for "
                f"{ckpt_formats.searched(fmt)}"
                + (f" (--format {fmt} given: only that format)" if fmt else "")
            )
        if self.episodes or any(r.unit == "replay" for r in self.refused):
            return None
        if self.replay_dirs:  # recognised (or named with --replay), but empty
            dirs = "; ".join(f"{d} ({kind.name}: {kind.patterns})" for d, kind in self.replay_dirs)
            return f"no episodes found in {dirs}"
        return (
            f"{logdir}: no episodes found; looked up to {sources.MAX_DEPTH} folders deep for "
            f"{replay_searched()} (--replay DIR names a replay directory)"
        )


class NothingToIngestError(BadInputError):
    """A log dir without any checkpoint or episode: refused before anything is stored."""


def survey(request: IngestRequest) -> Found:
    """The log dir's checkpoints and episodes (those the request names, if it names any;
    less the files that must not be read, which are listed as refused); reads names and small
    files only, touches no store."""
    found = Found()
    roots = request.read_roots
    chosen = {p.resolve() for p in request.checkpoints}
    keys = set(request.episode_keys)
    for checkpoint in ckpt_formats.discover(request.logdir, request.checkpoint_format):
        if chosen and checkpoint.path.resolve() not in chosen:
            continue
        try:
            for path in (
                checkpoint.path,
                *ckpt_formats.get_format(checkpoint.format).content_files(checkpoint),
            ):
                sources.check_readable(path, roots)
        except BadInputError as err:
            found.refused.append(Refusal("checkpoint", Path(err.path or checkpoint.path), str(err)))
            continue
        found.checkpoints.append(checkpoint)
    for directory, fmt in sources.replay_dirs(request.logdir, list(request.replay)):
        found.replay_dirs.append((directory, fmt))

        def skip(err: BadInputError, directory: Path = directory) -> None:
            found.refused.append(Refusal("replay", Path(err.path or directory), str(err)))

        try:
            sources.check_readable(directory, roots)
            listed = fmt.list(directory, on_error=skip)
        except BadInputError as err:
            skip(err)
            continue
        for ref in listed:
            if keys and ref.key not in keys:
                continue
            try:
                sources.check_readable(ref.path, roots)
                if ref.length < 2:  # no transition: nothing for the filter to predict
                    raise BadInputError(
                        "episode has one step; a trace needs at least two", path=ref.path
                    )
            except BadInputError as err:
                skip(err)
                continue
            found.episodes.append(ref)
    return found


class Planner:
    """The plan of one request against one store (and a watcher's snapshot cache)."""

    def __init__(
        self,
        store: Store,
        request: IngestRequest,
        cache: SnapshotCache | None = None,
        found: Found | None = None,
    ) -> None:
        if request.posterior not in ("mode", "sample"):
            raise BadInputError(f"--posterior must be mode or sample, got {request.posterior!r}")
        self.store = store
        self.writer: StoreWriter = store.writer
        self.request = request
        self.variants: list[Variant] = [parse(v) for v in dict.fromkeys(request.variants)]
        self.snapshots = request.snapshots or get_settings().home / "snapshots"
        self.cache: SnapshotCache = {} if cache is None else cache
        self._found = found
        self._declared: list[str] | None = None

    def found(self) -> Found:
        """The survey of the log dir, taken once per planner."""
        if self._found is None:
            self._found = survey(self.request)
        return self._found

    def pending(self) -> int:
        """Units not stored yet (0 when a watcher has nothing to do); loads no model and
        registers nothing."""
        req = self.request
        found = self.found()
        run_id = self.writer.find_run(req.name)
        keys = {ref.key for ref in found.episodes}
        count = 0
        for ref in found.checkpoints:
            snap = self._snapshot(ref)
            if isinstance(snap, str):
                continue
            checkpoint_id = (
                None
                if run_id is None
                else self.writer.find_checkpoint(run_id, content_hash=snap.content_hash)
            )
            if checkpoint_id is None:
                count += len(keys) * len(self.variants)
                continue
            heads = self.store.queries.get_checkpoint(checkpoint_id=checkpoint_id).config.get(
                "heads", HEADS
            )
            for variant in self.variants:
                done = self.writer.done_episode_keys(
                    checkpoint_id,
                    variant=variant.spec,
                    posterior=req.posterior_label,
                    covering=trace_metrics(heads, req.options.metrics),
                )
                count += len(keys - done)
        return count

    def ensure_run(self) -> int:
        """The run's id; a new run records the checkpoint format(s) found in its log dir and
        their model family (each checkpoint format is named for the family it rebuilds).
        Refuses a log dir with nothing to ingest before anything is stored."""
        req = self.request
        found = self.found()
        if (why := found.nothing(req)) is not None:
            raise NothingToIngestError(why)
        source = "+".join(sorted({ref.format for ref in found.checkpoints})) or None
        return self.writer.ensure_run(
            req.name,
            logdir=str(req.logdir.resolve()),
            format=source,
            family=source,
            replay_dirs=[str(d.resolve()) for d in req.replay],
        )

    def _snapshot(self, ref: ckpt_formats.CheckpointRef) -> sources.Snapshot | str:
        try:
            files = ckpt_formats.get_format(ref.format).content_files(ref)
            key = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
        except (OSError, BeliefscopeError) as err:
            return str(err)
        if key not in self.cache:
            try:
                self.cache[key] = sources.snapshot(ref, self.snapshots)
            except (OSError, BeliefscopeError) as err:
                return str(err)
        return self.cache[key]

    # -- the plan -------------------------------------------------------------------------

    def plan(self, run_id: int, report: IngestReport, progress: ProgressSink) -> list[WorkUnit]:
        """Register every checkpoint version, skip stored units, batch the rest by length."""
        req = self.request
        found = self.found()
        for refusal in found.refused:
            self._error(report, unit=refusal.unit, file=refusal.file, reason=refusal.reason)
        episodes, checkpoints = found.episodes, found.checkpoints
        total = len(checkpoints) * len(episodes) * len(self.variants)
        self.writer.update_job(
            report.job_id, total=total, checkpoints_total=len(checkpoints), episodes=len(episodes)
        )
        progress.start(total)
        # one episode per batch when sampling: a seeded draw must not depend on batch neighbours
        size = 1 if req.posterior == "sample" else req.batch_size
        units: list[WorkUnit] = []
        # newest first: while a long backlog is ingested, the model a user cares about most
        # (the latest) is the first one on screen
        newest = sorted(checkpoints, key=lambda r: (r.step is not None, r.step or 0, str(r.path)))
        for ref in reversed(newest):
            registered = self._register_checkpoint(run_id, ref, report)
            planned = 0
            for variant in self.variants:
                if registered is None:  # its error is recorded; count its units as finished
                    progress.advance(len(episodes), "checkpoint not loadable")
                    self.writer.update_job(report.job_id, add_done=len(episodes))
                    continue
                checkpoint_id, snapshot, covering = registered
                done = self.writer.done_episode_keys(
                    checkpoint_id,
                    variant=variant.spec,
                    posterior=req.posterior_label,
                    covering=covering,
                )
                todo = [e for e in episodes if e.key not in done]
                if skipped := len(episodes) - len(todo):
                    report.skipped += skipped
                    progress.advance(skipped, "already stored")
                    self.writer.update_job(report.job_id, add_done=skipped)
                batches = [
                    WorkUnit(report.job_id, run_id, checkpoint_id, snapshot, variant.spec, tuple(b))
                    for b in _batches(todo, size)
                ]
                planned += len(batches)
                units += batches
            if not planned:  # nothing to compute for it: it is done already
                self.writer.update_job(report.job_id, add_checkpoints_done=1)
        return units

    def _register_checkpoint(
        self, run_id: int, ref: ckpt_formats.CheckpointRef, report: IngestReport
    ) -> tuple[int, ckpt_formats.CheckpointRef, tuple[str, ...]] | None:
        """Snapshot, load once (to check it and read its spec) and register a checkpoint
        version; returns its id, snapshot and the metrics its traces must hold to count as
        done, or None (error recorded) if it doesn't load."""
        snap = self._snapshot(ref)
        try:
            if isinstance(snap, str):
                raise BadInputError(snap, path=ref.path)
            try:
                model = ckpt_formats.load(snap.ref)
            except BeliefscopeError as err:  # about the copy: say it of the user's file
                raise BadInputError(snap.as_source(str(err))) from None
        except BeliefscopeError as err:
            for key, value in list(self.cache.items()):  # this version won't load next time either
                if value is snap:
                    self.cache[key] = str(err)
            self._error(report, unit=f"checkpoint {ref.path.name}", file=ref.path, reason=str(err))
            return None
        spec, heads = model.spec, model_heads(model)
        trained_on = spec.config.get("train_episodes") or self._declared_training()
        checkpoint_id = self.writer.ensure_checkpoint(
            run_id,
            content_hash=snap.content_hash,
            format=ref.format,
            source_path=str(snap.ref.path),
            step=ref.step if ref.step is not None else spec.config.get("step"),
            family=spec.family,
            config={
                **_jsonable(spec.config),
                "origin": str(ref.path),
                "latent": spec.latent,
                "deter": spec.deter,
                "groups": spec.groups,
                "classes": spec.classes,
                "action_dim": spec.action_dim,
                "image_shape": list(spec.image_shape),
                "train_episodes": list(trained_on),
                "heads": sorted(heads),
            },
        )
        return checkpoint_id, snap.ref, trace_metrics(heads, self.request.options.metrics)

    def _declared_training(self) -> list[str]:
        """Fingerprints of the episodes under `train_replay`, read once."""
        if self._declared is None:
            self._declared = []
            for root in self.request.train_replay:
                fmt = replay_format_for(root)
                self._declared.extend(fmt.load(ref).fingerprint for ref in fmt.list(root))
        return self._declared

    def _error(self, report: IngestReport, *, unit: str, file: Path, reason: str) -> None:
        report.errors.append(reason)
        self.writer.record_job_error(report.job_id, unit=unit, file=str(file), reason=reason)


def _batches(refs: Sequence[EpisodeRef], size: int) -> Iterator[list[EpisodeRef]]:
    """Fixed-size batches of similar length, so little compute goes to padding."""
    ordered = sorted(refs, key=lambda r: (r.length, r.key))
    for i in range(0, len(ordered), size):
        yield ordered[i : i + size]


def _jsonable(config: dict) -> dict:
    return {
        k: v
        for k, v in config.items()
        if isinstance(v, str | int | float | bool | list | dict | type(None))
    }
