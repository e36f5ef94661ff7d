"""Trace variants: the plain filter and what-if replays of the same recorded episode.

A variant is named by a spec string stored as the trace's `variant`:
- `filter`            the recorded episode as it happened (open-loop horizon 5)
- `openloop:K`        the same filter with open-loop error at horizon K
- `dropout:A-B`       frames of steps A..B-1 withheld: the model advances on its prior alone
- `dropout:occluded`  frames withheld exactly where ground truth says the object is hidden
- `delay:D`           frame t is replaced by frame t-D (a sensor delay of D steps)
Each turns into changes of the input batch, so every variant runs through the same compute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
import torch

from beliefscope.errors import BadInputError
from beliefscope.replay.base import Episode
from ingest.compute import Batch, ComputeOptions

_PATTERNS = {
    "filter": re.compile(r"filter"),
    "openloop": re.compile(r"openloop:(\d+)"),
    "dropout": re.compile(r"dropout:(?:(\d+)-(\d+)|occluded)"),
    "delay": re.compile(r"delay:(\d+)"),
}


@dataclass(frozen=True)
class Variant:
    spec: str
    kind: str
    args: tuple[int, ...] = ()

    def options(self, base: ComputeOptions) -> ComputeOptions:
        return replace(base, openloop=self.args[0]) if self.kind == "openloop" else base

    def needs_truth(self) -> bool:
        return self.kind == "dropout" and not self.args

    def apply(self, batch: Batch, episodes: list[Episode]) -> Batch:
        """The batch the model sees under this variant."""
        if self.kind == "dropout":
            return replace(batch, observed=self._dropout_mask(batch, episodes))
        if self.kind == "delay":
            (d,) = self.args
            steps = batch.image.shape[1]
            # index of the frame shown at step t: t - d, but never before the episode start
            starts = _episode_starts(batch.is_first)  # (B, T)
            t = torch.arange(steps, device=starts.device).expand_as(starts)
            src = torch.maximum(t - d, starts)
            image = torch.gather(batch.image, 1, src[:, :, None, None, None].expand_as(batch.image))
            return replace(batch, image=image)
        return batch

    def _dropout_mask(self, batch: Batch, episodes: list[Episode]) -> torch.Tensor:
        steps = batch.is_first.shape[1]
        if self.args:
            a, b = self.args
            t = torch.arange(steps, device=batch.is_first.device)
            hidden = ((t >= a) & (t < b)).expand_as(batch.is_first)
        else:
            rows = []
            for ep in episodes:
                if "occluded" not in ep.truth:
                    raise BadInputError(
                        "dropout:occluded needs ground truth 'occluded'", path=ep.ref.path
                    )
                occ = np.asarray(ep.truth["occluded"], bool)
                rows.append(np.pad(occ, (0, steps - len(occ))))
            hidden = torch.from_numpy(np.stack(rows)).to(batch.is_first.device)
        return ~hidden | batch.is_first  # a reset frame is always seen


def _episode_starts(is_first: torch.Tensor) -> torch.Tensor:
    """For each step, the index of the most recent reset at or before it: (B, T)."""
    steps = is_first.shape[1]
    t = torch.arange(steps, device=is_first.device).expand_as(is_first)
    marked = torch.where(is_first, t, torch.zeros_like(t))
    return torch.cummax(marked, dim=1).values


def parse(spec: str) -> Variant:
    for kind, pattern in _PATTERNS.items():
        match = pattern.fullmatch(spec)
        if match:
            args = tuple(int(g) for g in match.groups() if g is not None)
            if kind == "dropout" and args and args[0] >= args[1]:
                raise BadInputError(f"trace variant {spec!r}: the window A-B needs A < B")
            if kind in ("openloop", "delay") and args[0] < 1:
                raise BadInputError(f"trace variant {spec!r}: needs a positive number of steps")
            return Variant(spec, kind, args)
    raise BadInputError(
        f"unknown trace variant {spec!r}; "
        "use filter, openloop:K, dropout:A-B, dropout:occluded, delay:D"
    )
