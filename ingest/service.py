"""The ingest service: checkpoints x episodes x probes -> traces in the store.

The unit of storage is (checkpoint, episode, probe), written in one transaction, so a re-run
skips what is done and a killed run leaves no partial trace. The driver plans `WorkUnit`s
(a checkpoint version, a probe and a batch of episodes of similar length), checkpoint-major,
and an `Executor` runs them: in this process, or fanned out over a cluster. Memory is bounded
by the batch, not by the number of episodes. Whatever fails (a corrupt episode, a checkpoint
that does not load, frames the model can't take) is recorded on the job with its file and
reason, and the rest goes on.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from beliefscope.config import get_settings
from beliefscope.errors import BadInputError, BeliefscopeError
from beliefscope.replay.base import Episode, EpisodeRef
from beliefscope.replay.base import detect_format as replay_format_for
from beliefscope.replay.base import get_format as replay_format
from beliefscope.review.service import ReviewService
from beliefscope.rssm import formats as ckpt_formats
from beliefscope.rssm.core import WorldModel, action_input
from beliefscope.store.engine import Store
from beliefscope.store.writer import StoreWriter
from ingest import sources
from ingest.compute import ComputeOptions, compute_traces, pad_batch
from ingest.variants import Variant, parse


@dataclass(frozen=True)
class IngestRequest:
    logdir: Path
    replay: tuple[Path, ...] = ()
    """Replay directories; empty: every recognised directory under `logdir`."""
    run_name: str | None = None
    probes: tuple[str, ...] = ("filter",)
    posterior: str = "mode"
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 16
    checkpoint_format: str | None = None
    options: ComputeOptions = field(default_factory=ComputeOptions)
    train_replay: tuple[Path, ...] = ()
    """Replay directories the run's checkpoints trained on (for checkpoints that do not say
    so themselves): their episodes are scored apart from held-out ones."""
    snapshots: Path | None = None
    """Where checkpoint versions are copied (default: `<BELIEFSCOPE_HOME>/snapshots`); the
    server reads them back for its overlays, so it must lie inside the server's data roots."""

    @property
    def name(self) -> str:
        return self.run_name or self.logdir.resolve().name

    @property
    def posterior_label(self) -> str:
        return "mode" if self.posterior == "mode" else f"sample:{self.seed}"


@dataclass
class IngestReport:
    job_id: int
    written: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


class ProgressSink(Protocol):
    """Where progress goes: a terminal bar, a log line, nothing."""

    def start(self, total: int) -> None: ...

    def advance(self, units: int, description: str) -> None: ...


class _Silent:
    def start(self, total: int) -> None:
        pass

    def advance(self, units: int, description: str) -> None:
        pass


SnapshotCache = dict[tuple[tuple[str, int, int], ...], "sources.Snapshot | str"]
"""(file, mtime, size) of a checkpoint's files -> its snapshot, or the reason it failed:
lets a watcher skip re-hashing unchanged files and re-trying a version that doesn't load."""


class Ingestor:
    def __init__(
        self, store: Store, request: IngestRequest, cache: SnapshotCache | None = None
    ) -> None:
        if request.posterior not in ("mode", "sample"):
            raise BadInputError(f"--posterior must be mode or sample, got {request.posterior!r}")
        self.store = store
        self.writer: StoreWriter = store.writer
        self.request = request
        self.variants: list[Variant] = [parse(p) for p in dict.fromkeys(request.probes)]
        self.snapshots = request.snapshots or get_settings().home / "snapshots"
        self.cache: SnapshotCache = {} if cache is None else cache
        self._declared: list[str] | None = None

    def pending(self) -> int:
        """Units not stored yet (0 when a watcher has nothing to do); loads no model."""
        req = self.request
        run_id = self._ensure_run()
        keys = {ref.key for ref in self._episodes(None)}
        count = 0
        for ref in self._checkpoints(None):
            snap = self._snapshot(ref)
            if isinstance(snap, str):
                continue
            checkpoint_id = self.writer.find_checkpoint(run_id, content_hash=snap.content_hash)
            for variant in self.variants:
                done = (
                    set()
                    if checkpoint_id is None
                    else self.writer.done_episode_keys(
                        checkpoint_id, probe=variant.spec, posterior=req.posterior_label
                    )
                )
                count += len(keys - done)
        return count

    def _ensure_run(self) -> int:
        """The run's id; a new run records the checkpoint format(s) found in its log dir and
        their model family (each checkpoint format is named for the family it rebuilds)."""
        req = self.request
        found = sorted({ref.format for ref in self._checkpoints(None)})
        source = "+".join(found) or None
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

    def run(
        self,
        progress: ProgressSink | None = None,
        job_id: int | None = None,
        executor: Executor | None = None,
    ) -> IngestReport:
        """Plan the units, run them (locally, or on `executor`), and keep the job's state."""
        req = self.request
        run_id = self._ensure_run()
        if job_id is None:
            job_id = self.writer.create_job(
                "ingest",
                run_id=run_id,
                args={
                    "logdir": str(req.logdir),
                    "probes": list(req.probes),
                    "posterior": req.posterior_label,
                    "host": socket.gethostname(),
                },
            )
        self.writer.start_job(job_id)
        report = IngestReport(job_id)
        progress = progress or _Silent()
        try:
            units = self._plan(run_id, report, progress)
            for unit, result in (executor or LocalExecutor()).map(self.store, req, units):
                report.written += result.written
                report.skipped += result.skipped
                report.errors += result.errors
                progress.advance(len(unit.episodes), unit.probe)
                self.writer.update_job(job_id, add_done=len(unit.episodes))
            if report.written:  # new traces get their flags now, not at the next rule change
                reviews = ReviewService(self.store)
                reviews.ensure_default_rules()
                reviews.apply_rules(who="ingest", run_id=run_id)
        except BaseException as err:
            self.writer.finish_job(job_id, failed=True, message=f"{type(err).__name__}: {err}")
            raise
        message = (
            f"{report.written} traces written, {report.skipped} already stored, "
            f"{len(report.errors)} errors"
        )
        self.writer.finish_job(job_id, message=message)
        return report

    # -- the plan -------------------------------------------------------------------------

    def _plan(self, run_id: int, report: IngestReport, progress: ProgressSink) -> list[WorkUnit]:
        """Register every checkpoint version, skip stored units, batch the rest by length."""
        req = self.request
        episodes = self._episodes(report)
        checkpoints = self._checkpoints(report)
        if not checkpoints:
            self._error(report, unit="checkpoints", file=req.logdir, reason="no checkpoints found")
        total = len(checkpoints) * len(episodes) * len(self.variants)
        self.writer.update_job(report.job_id, total=total)
        progress.start(total)
        # one episode per batch when sampling: a seeded draw must not depend on batch neighbours
        size = 1 if req.posterior == "sample" else req.batch_size
        units: list[WorkUnit] = []
        # newest first: while a long backlog is ingested, the model a user cares about most
        # (the latest) is the first one on screen
        newest = sorted(checkpoints, key=lambda r: (r.step is not None, r.step or 0, str(r.path)))
        for ref in reversed(newest):
            registered = self._register_checkpoint(run_id, ref, report)
            for variant in self.variants:
                if registered is None:  # its error is recorded; count its units as finished
                    progress.advance(len(episodes), "checkpoint not loadable")
                    self.writer.update_job(report.job_id, add_done=len(episodes))
                    continue
                checkpoint_id, snapshot = registered
                done = self.writer.done_episode_keys(
                    checkpoint_id, probe=variant.spec, posterior=req.posterior_label
                )
                todo = [e for e in episodes if e.key not in done]
                if skipped := len(episodes) - len(todo):
                    report.skipped += skipped
                    progress.advance(skipped, "already stored")
                    self.writer.update_job(report.job_id, add_done=skipped)
                units += [
                    WorkUnit(report.job_id, run_id, checkpoint_id, snapshot, variant.spec, tuple(b))
                    for b in _batches(todo, size)
                ]
        return units

    def _checkpoints(self, report: IngestReport | None) -> list[ckpt_formats.CheckpointRef]:
        """The log dir's checkpoints, less those `sources.check_readable` refuses."""
        req = self.request
        refs = []
        for ref in ckpt_formats.discover(req.logdir, req.checkpoint_format):
            try:
                sources.check_readable(ref.path, req.logdir)
            except BadInputError as err:
                if report:
                    self._error(
                        report, unit="checkpoint", file=Path(err.path or ref.path), reason=str(err)
                    )
                continue
            refs.append(ref)
        return refs

    def _episodes(self, report: IngestReport | None) -> list[EpisodeRef]:
        req = self.request
        refs: list[EpisodeRef] = []
        for directory, fmt in sources.replay_dirs(req.logdir, list(req.replay)):

            def skip(err: BadInputError, directory: Path = directory) -> None:
                if report:
                    self._error(
                        report, unit="replay", file=Path(err.path or directory), reason=str(err)
                    )

            try:
                listed = fmt.list(directory, on_error=skip)
            except BadInputError as err:
                skip(err)
                continue
            for ref in listed:
                try:
                    sources.check_readable(ref.path, directory)
                    if ref.length < 2:  # no transition: nothing for the filter to predict
                        raise BadInputError(
                            "episode has one step; a trace needs at least two", path=ref.path
                        )
                except BadInputError as err:
                    skip(err)
                    continue
                refs.append(ref)
        if not refs and report:
            self._error(report, unit="replay", file=req.logdir, reason="no episodes found")
        return refs

    def _register_checkpoint(
        self, run_id: int, ref: ckpt_formats.CheckpointRef, report: IngestReport
    ) -> tuple[int, ckpt_formats.CheckpointRef] | None:
        """Snapshot, load once (to check it and read its spec) and register a checkpoint
        version; returns its id and snapshot, or None (error recorded) if it doesn't load."""
        snap = self._snapshot(ref)
        try:
            if isinstance(snap, str):
                raise BadInputError(snap, path=ref.path)
            model = ckpt_formats.load(snap.ref)
        except BeliefscopeError as err:
            for key, value in list(self.cache.items()):  # this version won't load next time either
                if value is snap:
                    self.cache[key] = str(err)
            self._error(report, unit=f"checkpoint {ref.path.name}", file=ref.path, reason=str(err))
            return None
        spec = model.spec
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
            },
        )
        return checkpoint_id, snap.ref

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


# -- the work: units, and where they run ----------------------------------------------------


@dataclass(frozen=True)
class WorkUnit:
    """One model batch: a checkpoint version, a trace variant, episodes of similar length.
    Each of its traces commits on its own, so a unit can be retried or re-run safely."""

    job_id: int
    run_id: int
    checkpoint_id: int
    checkpoint: ckpt_formats.CheckpointRef  # the snapshot
    probe: str
    episodes: tuple[EpisodeRef, ...]


@dataclass
class UnitResult:
    written: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


class UnitRunner:
    """Runs work units against a store. It keeps the last model loaded, since units arrive
    grouped by checkpoint (locally, and on each distributed worker)."""

    def __init__(self, store: Store, request: IngestRequest) -> None:
        self.store, self.request = store, request
        self.writer: StoreWriter = store.writer
        self._model: tuple[ckpt_formats.CheckpointRef, WorldModel] | None = None

    def model(self, ref: ckpt_formats.CheckpointRef) -> WorldModel:
        if self._model is None or self._model[0] != ref:
            self._model = None  # free the previous one first
            model = ckpt_formats.load(ref)
            if isinstance(model, torch.nn.Module):
                model.to(self.request.device).eval()
            self._model = (ref, model)
        return self._model[1]

    @staticmethod
    def read(unit: WorkUnit) -> list[Episode | BeliefscopeError]:
        """The unit's episodes from their files (no model, no store): the part an executor
        may run ahead, on another thread, while the previous unit computes."""
        out: list[Episode | BeliefscopeError] = []
        for ref in unit.episodes:
            try:
                out.append(replay_format(ref.format).load(ref))
            except BeliefscopeError as err:
                out.append(err)
        return out

    def __call__(
        self, unit: WorkUnit, episodes: list[Episode | BeliefscopeError] | None = None
    ) -> UnitResult:
        req = self.request
        result = UnitResult()
        variant = parse(unit.probe)
        try:
            model = self.model(unit.checkpoint)
        except BeliefscopeError as err:
            self._error(
                unit, result, f"checkpoint {unit.checkpoint.path.name}", unit.checkpoint.path, err
            )
            return result
        read = self.read(unit) if episodes is None else episodes
        loaded = [
            ep
            for ep in (
                self._admit(unit, ref, ep, model, variant, result)
                for ref, ep in zip(unit.episodes, read, strict=True)
            )
            if ep
        ]
        if not loaded:
            return result
        batch_episodes = [ep for ep, _ in loaded]
        batch = variant.apply(pad_batch(batch_episodes, req.device), batch_episodes)
        options = replace(variant.options(req.options), posterior=req.posterior, seed=req.seed)  # type: ignore[arg-type]
        traces = compute_traces(model, batch, options)
        for (_, episode_id), data in zip(loaded, traces, strict=True):
            stored = self.writer.write_trace(
                unit.checkpoint_id, episode_id, unit.probe, req.posterior_label, data
            )
            if stored is None:
                result.skipped += 1
            else:
                result.written += 1
        return result

    def _admit(
        self,
        unit: WorkUnit,
        ref: EpisodeRef,
        ep: Episode | BeliefscopeError,
        model: WorldModel,
        variant: Variant,
        result: UnitResult,
    ) -> tuple[Episode, int] | None:
        """Check a read episode against the model and the probe, and register it."""
        try:
            if isinstance(ep, BeliefscopeError):
                raise ep
            _check_compatible(ep, model)
            if variant.needs_truth() and "occluded" not in ep.truth:
                raise BadInputError(
                    f"probe {variant.spec} needs ground truth 'occluded'", path=ref.path
                )
        except BeliefscopeError as err:
            self._error(unit, result, f"episode {ref.key} / {variant.spec}", ref.path, err)
            return None
        episode_id = self.writer.ensure_episode(
            unit.run_id,
            key=ref.key,
            format=ref.format,
            source_path=str(ref.path),
            length=ep.length,
            episode_return=ep.episode_return,
            has_truth=bool(ep.truth),
            truth_summary=_truth_summary(ep),
            locator={"part": ref.part, "extra": list(ref.extra)},
            fingerprint=ep.fingerprint,
        )
        return ep, episode_id

    def _error(
        self, unit: WorkUnit, result: UnitResult, what: str, file: Path, err: Exception
    ) -> None:
        result.errors.append(str(err))
        self.writer.record_job_error(unit.job_id, unit=what, file=str(file), reason=str(err))


class Executor(Protocol):
    """Where work units run. Results may come back in any order."""

    def map(
        self, store: Store, request: IngestRequest, units: Sequence[WorkUnit]
    ) -> Iterator[tuple[WorkUnit, UnitResult]]: ...


class LocalExecutor:
    """In this process, in plan order (one model load per checkpoint), reading the next
    unit's files on a second thread while the current one computes."""

    def map(
        self, store: Store, request: IngestRequest, units: Sequence[WorkUnit]
    ) -> Iterator[tuple[WorkUnit, UnitResult]]:
        runner = UnitRunner(store, request)
        with ThreadPoolExecutor(1, thread_name_prefix="ingest-read") as reader:
            ahead = reader.submit(UnitRunner.read, units[0]) if units else None
            for i, unit in enumerate(units):
                assert ahead is not None
                episodes = ahead.result()
                if i + 1 < len(units):
                    ahead = reader.submit(UnitRunner.read, units[i + 1])
                yield unit, runner(unit, episodes)


def _check_compatible(ep: Episode, model: WorldModel) -> None:
    spec = model.spec
    if tuple(ep.image.shape[1:]) != tuple(spec.image_shape):
        raise BadInputError(
            f"frames are {tuple(ep.image.shape[1:])} but the model takes {tuple(spec.image_shape)}",
            path=ep.ref.path,
        )
    # the cell's own encoding first: official DreamerV3 replay stores one action index column
    width = action_input(model.cell, torch.as_tensor(ep.action[:1])).shape[-1]
    if width != spec.action_dim:
        raise BadInputError(
            f"actions have {ep.action.shape[1]} dims but the model takes {spec.action_dim}",
            path=ep.ref.path,
        )


def _batches(refs: Sequence[EpisodeRef], size: int) -> Iterator[list[EpisodeRef]]:
    """Fixed-size batches of similar length, so little compute goes to padding."""
    ordered = sorted(refs, key=lambda r: (r.length, r.key))
    for i in range(0, len(ordered), size):
        yield ordered[i : i + size]


def _truth_summary(ep: Episode) -> dict[str, int]:
    truth = ep.truth
    summary: dict[str, int] = {}
    if "occluded" in truth:
        occ = np.asarray(truth["occluded"], bool)
        summary["occluded_steps"] = int(occ.sum())
        summary["occlusions"] = int((occ[1:] & ~occ[:-1]).sum() + occ[0])
    if "slip" in truth:
        summary["slips"] = int(np.asarray(truth["slip"], bool).sum())
    return summary


def _jsonable(config: dict) -> dict:
    return {
        k: v
        for k, v in config.items()
        if isinstance(v, str | int | float | bool | list | dict | type(None))
    }


def default_threads() -> int:
    """Leave one core for the server and the OS: oversubscribed torch threads crawl."""
    configured = get_settings().torch_threads
    return configured if configured > 0 else max(1, (os.cpu_count() or 2) - 1)
