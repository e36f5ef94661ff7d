"""Belief traces: re-run a world model as a filter over episodes and measure every step.

Pure computation (model + arrays in, `TraceData` out): no files, no store. Episodes are
batched (padded to the longest in the batch), which gives the same numbers as a batch of one
because every step's math is row-independent and the default posterior is the mode (no random
draws shared by a batch). Only the recurrent loop runs over the padding (a step of the whole
batch at a time); the CNNs encode and decode the steps inside their episodes alone, and only
the open-loop decodes that are stored.
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

Precision = Literal["fp32", "bf16"]

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


CPU_FRAMES = 64
"""Frames per CNN call on a CPU: the activations of more spill out of the caches, and the
convolutions run up to 3x slower per frame (measured: bench/ingest.py's profile)."""

DEVICE_FRAMES = 1024
"""Frames per CNN call on an accelerator, where a bigger call fills more of the chip."""


@dataclass(frozen=True)
class ComputeOptions:
    posterior: PosteriorMode = "mode"
    seed: int = 0
    metrics: Metrics = "all"
    openloop: int = 5
    """Horizon k of the open-loop error (0 disables it)."""
    prob_groups: int = 4
    """Posterior/prior class probabilities are kept for this many latent groups."""
    precision: Precision = "fp32"
    """bf16: the CNNs (encoder, decoder) run under bf16 autocast, about 1.5x faster on a CPU
    with AVX-512 BF16; the recurrent filter and every statistic stay fp32. `bench/ingest.py
    --profile --precision bf16` reports the deviation from fp32 per metric."""
    frames: int | None = None
    """Frames encoded or decoded in one call (None: `CPU_FRAMES` on a CPU, else
    `DEVICE_FRAMES`): bounds the CNN's activation memory whatever the batch size and episode
    length."""

    def frames_on(self, device: torch.device | str) -> int:
        if self.frames is not None:
            return self.frames
        return CPU_FRAMES if torch.device(device).type == "cpu" else DEVICE_FRAMES

    def chunk(self, batch: int, device: torch.device | str = "cpu") -> int:
        """Time steps per CNN call for a batch of `batch` episodes."""
        return max(1, self.frames_on(device) // max(1, batch))

    def cnn(self, device: torch.device) -> torch.autocast:
        """The precision the encoder and decoder run at."""
        return torch.autocast(device.type, torch.bfloat16, enabled=self.precision == "bf16")


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


def valid_rows(batch: Batch) -> Tensor:
    """Flat indices (into B*T) of the steps inside their episode: padding is never computed."""
    steps = batch.is_first.shape[1]
    lengths = torch.tensor(batch.lengths, device=batch.is_first.device)
    inside = torch.arange(steps, device=lengths.device) < lengths[:, None]  # (B, T)
    return inside.flatten().nonzero()[:, 0]


def encode_rows(model: WorldModel, batch: Batch, rows: Tensor, frames: int) -> Tensor:
    """Embeddings (B, T, E) of the frames at flat `rows`; zeros elsewhere (padded steps, whose
    results are dropped: every step's math is row-independent)."""
    image = batch.image.flatten(0, 1)  # (B, T, H, W, C) -> (B*T, H, W, C)
    parts = [
        model.encode(image[rows[s : s + frames]][None])[0]  # (1, n, H, W, C) -> (n, E)
        for s in range(0, len(rows), frames)
    ]
    embed = torch.cat(parts).float()
    out = embed.new_zeros(image.shape[0], embed.shape[-1])
    out[rows] = embed
    return out.reshape(*batch.is_first.shape, -1)  # (B*T, E) -> (B, T, E)


def decode_rows(
    model: WorldModel, feat: Tensor, image: Tensor, rows: Tensor, frames: int
) -> Tensor:
    """MSE (N,) of the decodes of `feat` (N, F) against the frames (B*T, H, W, C) at flat
    `rows`, `frames` decodes per call."""
    parts = [
        frame_mse(model.decode(feat[s : s + frames]), image[rows[s : s + frames]])
        for s in range(0, len(rows), frames)
    ]
    return torch.cat(parts) if parts else image.new_zeros(0, dtype=torch.float32)


def scatter_rows(shape: torch.Size, rows: Tensor, values: Tensor) -> Tensor:
    """(B, T) of NaN with `values` at flat `rows`."""
    out = torch.full((shape[0] * shape[1],), float("nan"), device=values.device)
    out[rows] = values
    return out.reshape(shape)


def openloop_rows(batch: Batch, rows: Tensor, horizon: int) -> Tensor:
    """The flat `rows` whose step t has an open-loop error: t >= horizon and no reset in
    (t - horizon, t] (imagination cannot cross an episode boundary)."""
    steps = batch.is_first.shape[1]
    t = rows % steps
    resets = batch.is_first.flatten().cumsum(0)  # (B*T,): resets up to each flat step
    # resets in (t - horizon, t]: row-local since t - horizon >= 0 stays in the same row
    crossed = resets[rows] - resets[(rows - horizon).clamp(min=0)] > 0
    return rows[(t >= horizon) & ~crossed]


def openloop_feat(
    model: WorldModel, traj: Trajectory, batch: Batch, rows: Tensor, horizon: int, chunk: int
) -> Tensor:
    """Features (N, F) at flat target `rows` after imagining `horizon` steps from the
    posterior at t - horizon with the recorded actions, `chunk` rows at a time."""
    deter = traj.deter.flatten(0, 1)  # (B, T, D) -> (B*T, D)
    stoch = traj.stoch.flatten(0, 1)  # (B, T, ...) -> (B*T, ...)
    action = batch.action.flatten(0, 1)  # (B, T, A) -> (B*T, A)
    ahead = torch.arange(1 - horizon, 1, device=deter.device)  # offsets of the actions taken
    parts = []
    for s in range(0, len(rows), chunk):
        target = rows[s : s + chunk]
        state = {"deter": deter[target - horizon], "stoch": stoch[target - horizon]}
        # actions leading to steps t - horizon + 1 .. t: (n, horizon, A)
        imag = imagine(model.cell, state, action[target[:, None] + ahead], posterior="mode")
        parts.append(model.feat(imag.deter[:, -1], imag.stoch[:, -1]))
    return torch.cat(parts) if parts else deter[:0]  # no target: nothing is decoded


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
        frames = options.frames_on(batch.image.device)
        rows = valid_rows(batch)
        with options.cnn(batch.image.device):
            embed = encode_rows(model, batch, rows, frames)
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
        if heads:
            feat_post = model.feat(traj.deter, traj.stoch)  # (B, T, F)
            feat_prior = model.feat(traj.deter, prior.mode())
        if "decode" in heads:
            shape, image = batch.is_first.shape, batch.image.flatten(0, 1)
            horizon = options.openloop
            ahead = openloop_rows(batch, rows, horizon) if horizon > 0 else rows[:0]
            imagined = openloop_feat(model, traj, batch, ahead, horizon, DEVICE_FRAMES)
            with options.cnn(batch.image.device):
                recon = decode_rows(model, feat_post.flatten(0, 1)[rows], image, rows, frames)
                pred = decode_rows(model, feat_prior.flatten(0, 1)[rows], image, rows, frames)
                openloop = decode_rows(model, imagined, image, ahead, frames)
            metrics["recon_error"] = scatter_rows(shape, rows, recon)
            metrics["pred_error"] = scatter_rows(shape, rows, pred)
            metrics["openloop_error"] = scatter_rows(shape, ahead, openloop)
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
