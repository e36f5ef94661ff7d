"""Belief traces: re-run a world model as a filter over episodes and measure every step.

Pure computation (model + arrays in, `TraceData` out): no files, no store. Episodes are
batched (padded to the longest in the batch; rows past an episode's end are computed and
dropped), which gives the same numbers as a batch of one because every step's math is
row-independent and the default posterior is the mode (no random draws shared by a batch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from beliefscope.replay.base import Episode
from beliefscope.rssm.core import PosteriorMode, Trajectory, WorldModel, imagine, observe
from beliefscope.rssm.dist import Categorical, LatentDist, correction
from beliefscope.values.traces import TraceData

HEADS = frozenset({"decode", "reward", "cont"})
"""A model's heads unless it names fewer in a `heads` attribute (see `WorldModel`)."""

Metrics = Literal["all", "belief"]
"""Which metrics a trace gets: `belief` runs the filter alone (encoder + cell), no head."""

BELIEF_METRICS = (
    "kl",
    "kl_dyn",
    "kl_rep",
    "correction",
    "prior_entropy",
    "post_entropy",
    "reward",
    "cont",
    "deter_norm",
    "deter_delta",
)
"""The step metrics of the filter's beliefs (and the recorded inputs), stored by every trace."""

HEAD_METRICS = {
    "decode": ("recon_error", "pred_error", "openloop_error"),
    "reward": ("reward_pred", "reward_error"),
    "cont": ("cont_pred",),
}
"""The step metrics each head adds under `--metrics all`."""


def model_heads(model: WorldModel) -> frozenset[str]:
    return frozenset(getattr(model, "heads", HEADS))


def trace_metrics(heads: Iterable[str], metrics: Metrics) -> tuple[str, ...]:
    """The step metrics `compute_traces` stores for a model with `heads`: what an ingest
    must find in a stored trace to skip its unit."""
    have = set(heads) if metrics == "all" else set()
    return BELIEF_METRICS + tuple(
        m for head, ms in HEAD_METRICS.items() if head in have for m in ms
    )


@dataclass(frozen=True)
class ComputeOptions:
    posterior: PosteriorMode = "mode"
    seed: int = 0
    metrics: Metrics = "all"
    openloop: int = 5
    """Horizon k of the open-loop error (0 disables it)."""
    prob_groups: int = 4
    """Posterior/prior class probabilities are kept for this many latent groups."""
    frames: int = 1024
    """Frames encoded or decoded in one call (batch x time steps): bounds the CNN's
    activation memory whatever the batch size and episode length."""

    def chunk(self, batch: int) -> int:
        """Time steps per CNN call for a batch of `batch` episodes."""
        return max(1, self.frames // max(1, batch))


@dataclass
class Batch:
    """Episodes padded to a common length, as tensors on the model's device."""

    image: Tensor  # (B, T, H, W, C) uint8
    action: Tensor  # (B, T, A) float32
    is_first: Tensor  # (B, T) bool
    reward: Tensor  # (B, T)
    cont: Tensor  # (B, T)
    lengths: list[int]
    observed: Tensor | None = None  # (B, T) bool; False withholds the frame (dropout probes)


def pad_batch(episodes: Sequence[Episode], device: torch.device | str = "cpu") -> Batch:
    """Stack episodes, padding the shorter ones by repeating their last row."""
    steps = max(ep.length for ep in episodes)

    def stack(get: Callable[[Episode], np.ndarray], dtype: torch.dtype) -> Tensor:
        rows = []
        for ep in episodes:
            value = np.asarray(get(ep))
            pad = steps - len(value)
            if pad:
                value = np.concatenate([value, np.repeat(value[-1:], pad, axis=0)])
            rows.append(value)
        return torch.from_numpy(np.stack(rows)).to(device=device, dtype=dtype)

    return Batch(
        image=stack(lambda ep: ep.image, torch.uint8),
        action=stack(lambda ep: ep.action, torch.float32),
        is_first=stack(lambda ep: ep.is_first, torch.bool),
        reward=stack(lambda ep: ep.reward, torch.float32),
        cont=stack(lambda ep: ~ep.is_terminal, torch.float32),
        lengths=[ep.length for ep in episodes],
    )


def frame_mse(pred: Tensor, image: Tensor) -> Tensor:
    """Per-step mean squared error in [0, 1] pixel space: (..., H, W, C) -> (...)."""
    return ((pred - image.float() / 255.0) ** 2).flatten(-3).mean(-1)


def decode_error(model: WorldModel, feat: Tensor, image: Tensor, chunk: int) -> Tensor:
    """Decode (B, T, F) in time chunks and compare with frames (B, T, H, W, C) -> (B, T)."""
    parts = [
        frame_mse(model.decode(feat[:, s : s + chunk]), image[:, s : s + chunk])
        for s in range(0, feat.shape[1], chunk)
    ]
    return torch.cat(parts, 1)


def encode_frames(model: WorldModel, image: Tensor, chunk: int) -> Tensor:
    return torch.cat(
        [model.encode(image[:, s : s + chunk]) for s in range(0, image.shape[1], chunk)], 1
    )


def openloop_error(
    model: WorldModel, traj: Trajectory, batch: Batch, horizon: int, chunk: int
) -> Tensor:
    """Error at step t of the decode after imagining `horizon` steps from the posterior at
    t - horizon with the recorded actions: (B, T), NaN where t < horizon or a reset lies in
    (t - horizon, t] (imagination cannot cross an episode boundary)."""
    b, steps = batch.is_first.shape
    out = torch.full((b, steps), float("nan"), device=batch.action.device)
    starts = steps - horizon
    if horizon <= 0 or starts <= 0:
        return out
    for s0 in range(0, starts, chunk):
        s1 = min(starts, s0 + chunk)
        n = s1 - s0
        # start states at s in [s0, s1): (B, n, ...) -> (B*n, ...)
        state = {
            "deter": traj.deter[:, s0:s1].reshape(b * n, -1),
            "stoch": traj.stoch[:, s0:s1].reshape(b * n, *traj.stoch.shape[2:]),
        }
        # actions leading to steps s+1 .. s+horizon: (B, n, horizon, A) -> (B*n, horizon, A)
        idx = torch.arange(s0, s1, device=out.device)[:, None] + torch.arange(
            1, horizon + 1, device=out.device
        )
        acts = batch.action[:, idx].reshape(b * n, horizon, -1)
        imag = imagine(model.cell, state, acts, posterior="mode")
        feat = model.feat(imag.deter[:, -1], imag.stoch[:, -1]).reshape(b, n, -1)  # (B, n, F)
        err = frame_mse(model.decode(feat), batch.image[:, s0 + horizon : s1 + horizon])
        crossed = batch.is_first[:, idx].any(-1)  # (B, n): a reset inside the horizon
        out[:, s0 + horizon : s1 + horizon] = torch.where(crossed, float("nan"), err)
    return out


def kl_terms(model: WorldModel, post: LatentDist, prior: LatentDist) -> tuple[Tensor, ...]:
    """Per-step (kl, kl_dyn, kl_rep): the cell's own `kl_terms` where its family's loss has
    its own form (TorchRL's balanced mode frees bits per categorical), else the summed KL
    floored at the free nats, as DreamerV3 does."""
    own = getattr(model.cell, "kl_terms", None)
    if own is not None:
        return tuple(own(post, prior))
    kl = post.kl(prior)
    free = kl.clamp(min=model.spec.free_nats)
    return kl, free, free


def compute_traces(
    model: WorldModel, batch: Batch, options: ComputeOptions = ComputeOptions()
) -> list[TraceData]:
    """One `TraceData` per episode of the batch (trimmed to its own length)."""
    generator = None
    if options.posterior == "sample":
        generator = torch.Generator(device=batch.action.device).manual_seed(options.seed)
    with torch.inference_mode():
        chunk = options.chunk(batch.image.shape[0])
        embed = encode_frames(model, batch.image, chunk)
        traj = observe(
            model.cell,
            embed,
            batch.action,
            batch.is_first,
            posterior=options.posterior,
            generator=generator,
            observed=batch.observed,
        )
        post, prior = traj.post, traj.prior
        kl, kl_dyn, kl_rep = kl_terms(model, post, prior)
        feat_post = model.feat(traj.deter, traj.stoch)
        feat_prior = model.feat(traj.deter, prior.mode())
        deter_delta = torch.linalg.vector_norm(traj.deter.diff(dim=1), dim=-1)
        deter_delta = torch.cat([torch.full_like(deter_delta[:, :1], float("nan")), deter_delta], 1)
        deter_delta = torch.where(batch.is_first, float("nan"), deter_delta)
        metrics = {
            "kl": kl,
            "kl_dyn": kl_dyn,
            "kl_rep": kl_rep,
            "correction": correction(post, prior),
            "prior_entropy": prior.entropy(),
            "post_entropy": post.entropy(),
            "reward": batch.reward,
            "cont": batch.cont,
            "deter_norm": torch.linalg.vector_norm(traj.deter, dim=-1),
            "deter_delta": deter_delta,
        }
        # metrics of a missing (or unwanted) head stay absent
        heads = model_heads(model) if options.metrics == "all" else frozenset()
        if "decode" in heads:
            metrics["recon_error"] = decode_error(model, feat_post, batch.image, chunk)
            metrics["pred_error"] = decode_error(model, feat_prior, batch.image, chunk)
            metrics["openloop_error"] = openloop_error(model, traj, batch, options.openloop, chunk)
        if "reward" in heads:
            metrics["reward_pred"] = model.reward(feat_post)
            metrics["reward_error"] = (batch.reward - model.reward(feat_prior)).abs()
        if "cont" in heads:
            metrics["cont_pred"] = model.cont(feat_post)
        kl_groups = post.kl_groups(prior)
        probs = None
        if isinstance(post, Categorical) and isinstance(prior, Categorical):
            g = options.prob_groups
            probs = (post.probs[:, :, :g], prior.probs[:, :, :g])
        host = {k: v.float().cpu().numpy() for k, v in metrics.items()}
        kl_groups_np = kl_groups.float().cpu().numpy()
        probs_np = None if probs is None else tuple(p.float().cpu().numpy() for p in probs)
    traces = []
    for i, length in enumerate(batch.lengths):
        traces.append(
            TraceData(
                metrics={k: v[i, :length].astype(np.float64) for k, v in host.items()},
                kl_groups=kl_groups_np[i, :length],
                post_probs=None if probs_np is None else probs_np[0][i, :length],
                prior_probs=None if probs_np is None else probs_np[1][i, :length],
            )
        )
    return traces
