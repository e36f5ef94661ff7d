"""Work units and the runner that computes them: one model batch of a checkpoint version, a
trace variant and episodes of similar length, each trace written in its own transaction, so a
unit can be retried or re-run safely (locally, or on any cluster worker)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from beliefscope.config import get_settings
from beliefscope.errors import BadInputError, BeliefscopeError
from beliefscope.replay.base import Episode, EpisodeRef
from beliefscope.replay.base import get_format as replay_format
from beliefscope.rssm import formats as ckpt_formats
from beliefscope.rssm.core import WorldModel, action_input
from beliefscope.store.engine import Store
from beliefscope.store.writer import StoreWriter
from ingest.compute import compute_traces, pad_batch
from ingest.request import IngestRequest
from ingest.variants import Variant, parse


@dataclass(frozen=True)
class WorkUnit:
    """One model batch: a checkpoint version, a trace variant, episodes of similar length.
    Each of its traces commits on its own, so a unit can be retried or re-run safely."""

    job_id: int
    run_id: int
    checkpoint_id: int
    checkpoint: ckpt_formats.CheckpointRef  # the snapshot
    variant: str
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
        variant = parse(unit.variant)
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
        pairs = [(episode_id, data) for (_, episode_id), data in zip(loaded, traces, strict=True)]
        stored = self.writer.write_traces(
            unit.checkpoint_id, unit.variant, req.posterior_label, pairs
        )
        for (episode_id, data), trace_id in zip(pairs, stored, strict=True):
            if trace_id is None:  # a unit stored with fewer metrics (`--metrics belief`)
                key = (unit.checkpoint_id, episode_id, unit.variant, req.posterior_label)
                trace_id = self.writer.fill_trace(*key, data)  # is completed in place
            if trace_id is None:
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
        """Check a read episode against the model and the variant, and register it."""
        try:
            if isinstance(ep, BeliefscopeError):
                raise ep
            check_compatible(ep, model)
            if variant.needs_truth() and "occluded" not in ep.truth:
                raise BadInputError(
                    f"trace variant {variant.spec} needs ground truth 'occluded'", path=ref.path
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
            locator=ref.locator,
            fingerprint=ep.fingerprint,
        )
        return ep, episode_id

    def _error(
        self, unit: WorkUnit, result: UnitResult, what: str, file: Path, err: Exception
    ) -> None:
        result.errors.append(str(err))
        self.writer.record_job_error(unit.job_id, unit=what, file=str(file), reason=str(err))


def check_compatible(ep: Episode, model: WorldModel) -> None:
    """Refuse an episode whose frames or actions the model cannot take, naming its file."""
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


def default_threads() -> int:
    """Settings' value, else the cores left free: this process's cores less the load other
    processes put on them now (the 1-minute load average), and at least one for the server
    and the OS. Oversubscribed torch threads crawl (~20x slower measured), and on a shared
    machine the other processes' threads are what oversubscribes."""
    configured = get_settings().torch_threads
    if configured > 0:
        return configured
    cores = len(os.sched_getaffinity(0))
    busy = max(1, round(os.getloadavg()[0]))
    return max(1, cores - busy)
