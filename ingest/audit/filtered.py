"""The audited episodes filtered once by the model: what every check reads or re-runs.

Episodes are padded into one batch (`valid` marks the real steps). A replay may hold several
episodes in one stream, so the checks see *segments*: the steps from one `is_first` to the next.
Counterfactual re-runs (shifted actions, a reset inserted, frames withheld) go through the same
family-independent `observe` as ingest, so the audit works for every family.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from beliefscope.replay.base import Episode
from beliefscope.rssm.core import Trajectory, WorldModel, observe
from beliefscope.rssm.dist import LatentDist
from beliefscope.values.audit import Check, Where
from ingest.compute import (
    HEADS,
    Batch,
    ComputeOptions,
    decode_error,
    encode_frames,
    kl_terms,
    pad_batch,
)

SAMPLE_EPISODES = 4
SAMPLE_STEPS = 48
"""Checks that decode frames (observation convention, dropout drift) read this many episodes
x steps: their effects are large, and decoding is the costly part of an audit."""
RECORDED = "as recorded"
DECODER_SKILL = 0.3
"""Checks that read the decoder need it to explain this share of the frames' variance: below
it the model is too untrained to tell a broken replay from a weak model."""
"""The name of the frames as the replay stores them (no alternative convention)."""


MIN_STEPS = 20
"""A check needs this many usable steps in the sample; with fewer it is inconclusive."""


def too_few(name: str, steps: int, which: str, rule: str = "") -> Check | None:
    """The inconclusive verdict of a check with fewer than MIN_STEPS usable steps, else None."""
    if steps >= MIN_STEPS:
        return None
    return Check(
        name,
        "inconclusive",
        f"The sample has {steps} {which}, fewer than the {MIN_STEPS} this check needs: audit "
        "more or longer episodes.",
        rule=rule,
        numbers={"steps": steps},
    )


def sentence(text: str) -> str:
    """`text` with its first letter capitalised (the rest untouched)."""
    return text[:1].upper() + text[1:]


def kl_of(model: WorldModel, post: LatentDist, prior: LatentDist) -> Tensor:
    """The family's own per-step KL (TorchRL's balanced mode has its own form)."""
    return kl_terms(model, post, prior)[0]


@dataclass
class Filtered:
    model: WorldModel
    episodes: list[Episode]
    batch: Batch
    embed: Tensor  # (B, T, E)
    traj: Trajectory
    kl: Tensor  # (B, T)
    valid: np.ndarray  # (B, T) bool: a real step, not padding
    since_first: np.ndarray  # (B, T) int: steps since the segment's first step
    until_end: np.ndarray  # (B, T) int: steps left in the segment after this one
    chunk: int
    _recon: dict[tuple[str, bool], np.ndarray] = field(default_factory=dict)

    @property
    def heads(self) -> frozenset[str]:
        return frozenset(getattr(self.model, "heads", HEADS))

    @property
    def is_first(self) -> np.ndarray:
        return self.batch.is_first.cpu().numpy()

    def steady(self, margin: int) -> np.ndarray:
        """Real steps at least `margin` steps inside their segment on both sides (so a shift
        or lag of up to `margin` stays inside it, and no reset step is included)."""
        return self.valid & (self.since_first >= margin) & (self.until_end >= margin)

    def where(self, row: int, t: int, note: str = "", t_end: int | None = None) -> Where:
        return Where(
            self.episodes[row].ref.key, int(t), None if t_end is None else int(t_end), note
        )

    def rerun(self, action: Tensor | None = None, is_first: Tensor | None = None) -> Tensor:
        """Per-step KL of the filter re-run with other actions or resets (B, T)."""
        traj = observe(
            self.model.cell,
            self.embed,
            self.batch.action if action is None else action,
            self.batch.is_first if is_first is None else is_first,
        )
        return kl_of(self.model, traj.post, traj.prior)

    def shifted_actions(self, shift: int) -> Tensor:
        """Actions fed `shift` steps late: step t gets action[t - shift] of its own segment,
        zeros where that index lies outside it (and on reset rows, as always)."""
        steps = self.batch.action.shape[1]
        index = np.clip(np.arange(steps) - shift, 0, steps - 1)
        inside = (self.since_first >= shift) & (self.until_end >= -shift) & ~self.is_first
        out = self.batch.action[:, index] * torch.from_numpy(inside)[..., None].to(
            self.batch.action.dtype
        )
        return out

    def refiltered(
        self, *, action: Tensor | None = None, is_first: np.ndarray | None = None
    ) -> Filtered:
        """The same episodes filtered again with repaired actions or resets."""
        batch = self.batch
        if action is not None:
            batch = replace(batch, action=action)
        if is_first is not None:
            batch = replace(batch, is_first=torch.from_numpy(is_first).to(batch.is_first.device))
        traj = observe(self.model.cell, self.embed, batch.action, batch.is_first)
        valid, since, until = segments(batch.is_first.cpu().numpy(), batch.lengths)
        kl = kl_of(self.model, traj.post, traj.prior)
        return replace(
            self, batch=batch, traj=traj, kl=kl, since_first=since, until_end=until, _recon={}
        )

    def recon_error(
        self, transform: Callable[[Tensor], Tensor] | None, name: str, withheld: bool = False
    ) -> np.ndarray:
        """Reconstruction MSE (b, t) on the decode sample, with the frames transformed (an
        alternative convention) and optionally every frame withheld; cached by name."""
        key = (name, withheld)
        if key not in self._recon:
            rows, steps = self.sample_index()
            image = self.sample_image()
            image = image if transform is None else transform(image)
            embed = encode_frames(self.model, image, self.chunk)
            observed = None
            if withheld:
                observed = torch.zeros(image.shape[:2], dtype=torch.bool, device=image.device)
            traj = observe(
                self.model.cell,
                embed,
                self.batch.action[rows, :steps],
                self.batch.is_first[rows, :steps],
                observed=observed,
            )
            feat = self.model.feat(traj.deter, traj.stoch)
            err = decode_error(self.model, feat, image, self.chunk)
            self._recon[key] = err.float().cpu().numpy()
        return self._recon[key]

    def decoder_skill(self) -> float:
        """1 - reconstruction error / the error of the sample's mean frame (a decoder that knows
        nothing): how much of the frames the model reconstructs (NaN without a decoder)."""
        if "decode" not in self.heads:
            return float("nan")
        return skill(self.recon_error(None, RECORDED), self.sample_image(), self.sample_valid())

    def sample_image(self) -> Tensor:
        rows, steps = self.sample_index()
        return self.batch.image[rows, :steps]

    def sample_index(self) -> tuple[np.ndarray, int]:
        """Rows (spread over the audited episodes) and leading steps of the decode sample."""
        rows = np.unique(np.linspace(0, len(self.episodes) - 1, SAMPLE_EPISODES).round()).astype(
            int
        )
        return rows, min(SAMPLE_STEPS, self.batch.image.shape[1])

    def sample_valid(self) -> np.ndarray:
        rows, steps = self.sample_index()
        return self.valid[rows, :steps]


def skill(error: np.ndarray, image: Tensor, valid: np.ndarray, flat: bool = False) -> float:
    """1 - mean `error` (b, t) over `valid` steps / the MSE of a decoder that knows nothing of
    the step: the sample's mean frame, or (`flat`) one grey level, which knows nothing of the
    frames' layout or channels either."""
    pixels = image.float() / 255.0
    seen = pixels[torch.from_numpy(valid)]
    mean = seen.mean() if flat else seen.mean(0)
    base = ((pixels - mean) ** 2).flatten(-3).mean(-1).cpu().numpy()[valid].mean()
    return 1.0 - float(error[valid].mean()) / max(float(base), 1e-12)


def segments(is_first: np.ndarray, lengths: Sequence[int]) -> tuple[np.ndarray, ...]:
    """(valid, steps since the segment's first step, steps left in it) for a padded batch."""
    steps = is_first.shape[1]
    t = np.arange(steps)
    end = np.asarray(lengths)[:, None]
    valid = t < end
    start = is_first | (t == 0)
    since = t - np.maximum.accumulate(np.where(start, t, 0), axis=1)
    # the first segment start after each step: a reversed running minimum, shifted by one
    starts = np.where(start, t, steps)
    after = np.concatenate([starts[:, 1:], np.full_like(starts[:, :1], steps)], axis=1)
    following = np.minimum.accumulate(after[:, ::-1], axis=1)[:, ::-1]
    until = np.minimum(following, end) - 1 - t
    return valid, since, until


def filter_episodes(
    model: WorldModel, episodes: Sequence[Episode], device: torch.device | str = "cpu"
) -> Filtered:
    """Encode and filter the episodes once (call under `torch.inference_mode`)."""
    batch = pad_batch(episodes, device)
    chunk = ComputeOptions().chunk(len(episodes), device)
    embed = encode_frames(model, batch.image, chunk)
    traj = observe(model.cell, embed, batch.action, batch.is_first)
    valid, since, until = segments(batch.is_first.cpu().numpy(), batch.lengths)
    return Filtered(
        model=model,
        episodes=list(episodes),
        batch=batch,
        embed=embed,
        traj=traj,
        kl=kl_of(model, traj.post, traj.prior),
        valid=valid,
        since_first=since,
        until_end=until,
        chunk=chunk,
    )
