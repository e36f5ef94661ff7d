"""Forensic probes: what-if replays that test a model's memory. Pure computation (model +
episodes in, arrays out); `ingest.probes_cli` stores the results.

- open-loop horizon curve: decode error after imagining h = 1..H steps from many start points;
- belief decoding: a ridge probe from the belief (h_t and the posterior probabilities) to the
  hidden object's position, fit on visible steps of some episodes and tested on occluded steps
  of others: does the belief still know where the box is while it is hidden?
- imagined futures: N sampled prior rollouts from each start step with the recorded actions,
  and the spread of the object positions the probe decodes from them;
- dropout drift: how far the belief wandered while frames were withheld (`dropout:*` traces).

`ablate_memory` wraps a model so its dynamics forget everything between steps: the control a
model's memory is measured against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import Ridge
from torch import Tensor

from beliefscope.errors import BadInputError
from beliefscope.replay.base import Episode
from beliefscope.rssm.core import RSSMCell, State, Trajectory, WorldModel, imagine, observe
from beliefscope.rssm.dist import Categorical, LatentDist
from ingest.compute import Batch, pad_batch

TARGET = "qpos"
TARGET_COLUMNS = slice(0, 2)
"""The hidden object's position in the occlusion world: the box's x/y slide joints."""


# -- memory ablation (a control) ---------------------------------------------------------


class _ForgetfulCell:
    """A cell whose dynamics see a fresh initial state at every step: the prior can use the
    last action but nothing remembered from before it."""

    def __init__(self, cell: RSSMCell) -> None:
        self._cell = cell

    def initial(self, batch: int) -> State:
        return self._cell.initial(batch)

    def img_step(self, state: State, action: Tensor) -> tuple[Tensor, LatentDist]:
        return self._cell.img_step(self._cell.initial(action.shape[0]), action)

    def obs_dist(self, deter: Tensor, embed: Tensor) -> LatentDist:
        return self._cell.obs_dist(deter, embed)


class _Ablated:
    """`model` with a forgetful cell; encoder and heads unchanged."""

    def __init__(self, model: WorldModel) -> None:
        self._model = model
        self.spec = model.spec
        self.cell = _ForgetfulCell(model.cell)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def ablate_memory(model: WorldModel) -> WorldModel:
    return _Ablated(model)  # type: ignore[return-value]


# -- shared helpers ----------------------------------------------------------------------


def _filter(model: WorldModel, batch: Batch) -> Trajectory:
    embed = model.encode(batch.image)  # (B, T, E)
    return observe(model.cell, embed, batch.action, batch.is_first, observed=batch.observed)


def _probs(dist: LatentDist) -> Tensor:
    """Class probabilities (categorical) or means (Gaussian), flattened: (..., G*K)."""
    value = dist.probs if isinstance(dist, Categorical) else dist.expectation()
    return value.flatten(-2) if isinstance(dist, Categorical) else value


def belief_features(deter: Tensor, dist: LatentDist) -> Tensor:
    """The belief a probe reads: [h_t, posterior probabilities], (..., D + G*K)."""
    return torch.cat([deter, _probs(dist)], -1)


def _mse(pred: Tensor, image: Tensor) -> Tensor:
    return ((pred - image.float() / 255.0) ** 2).flatten(-3).mean(-1)


# -- open-loop horizon curve -------------------------------------------------------------


@dataclass(frozen=True)
class HorizonCurve:
    horizon: np.ndarray  # (H,) 1..H
    error: np.ndarray  # (H,) mean decode MSE after imagining h steps
    count: np.ndarray  # (H,) start points that reached h without crossing a reset


def horizon_curve(
    model: WorldModel, episodes: Sequence[Episode], horizon: int = 15, stride: int = 5
) -> HorizonCurve:
    """Decode error vs imagination horizon, from every `stride`-th step of every episode."""
    if horizon < 1 or stride < 1:
        raise BadInputError(f"horizon and stride must be positive, got {horizon}, {stride}")
    total = np.zeros(horizon)
    count = np.zeros(horizon, dtype=np.int64)
    with torch.inference_mode():
        for ep in episodes:
            batch = pad_batch([ep])
            traj = _filter(model, batch)
            starts = np.arange(0, ep.length - 1, stride)
            if not len(starts):
                continue
            # actions leading to steps s+1 .. s+H (clamped at the end, masked below): (n, H, A)
            idx = np.minimum(starts[:, None] + np.arange(1, horizon + 1), ep.length - 1)
            acts = batch.action[0, torch.from_numpy(idx)]
            state = {"deter": traj.deter[0, starts], "stoch": traj.stoch[0, starts]}
            imag = imagine(model.cell, state, acts)
            frames = model.decode(model.feat(imag.deter, imag.stoch))  # (n, H, h, w, c)
            err = _mse(frames, batch.image[0, torch.from_numpy(idx)]).numpy()  # (n, H)
            beyond = starts[:, None] + np.arange(1, horizon + 1) >= ep.length
            reset = np.cumsum(ep.is_first[idx] & ~beyond, axis=1) > 0
            valid = ~beyond & ~reset
            total += np.where(valid, err, 0.0).sum(0)
            count += valid.sum(0)
    with np.errstate(invalid="ignore"):
        error = total / count
    return HorizonCurve(np.arange(1, horizon + 1), error, count)


# -- belief decoding ---------------------------------------------------------------------


@dataclass(frozen=True)
class DecodeResult:
    since_occlusion: np.ndarray  # (K,) 1..K steps since the object was hidden
    error: np.ndarray  # (K,) mean position error (m) of held-out occluded steps
    count: np.ndarray  # (K,)
    visible_error: float  # mean error on held-out visible steps
    baseline_error: float  # error of predicting the training mean everywhere (held-out occluded)
    decoded: list[np.ndarray]  # per episode (T, 2): where the belief puts the object


def _target(ep: Episode) -> np.ndarray:
    if TARGET not in ep.truth or "occluded" not in ep.truth:
        raise BadInputError(
            "belief decoding needs ground truth 'qpos' and 'occluded'", path=ep.ref.path
        )
    return np.asarray(ep.truth[TARGET], np.float64)[:, TARGET_COLUMNS]


def episode_features(model: WorldModel, ep: Episode) -> np.ndarray:
    with torch.inference_mode():
        traj = _filter(model, pad_batch([ep]))
        return belief_features(traj.deter, traj.post)[0].double().numpy()  # (T, F)


def steps_since_occlusion(occluded: np.ndarray) -> np.ndarray:
    """1 on the first hidden step, 2 on the next, ...; 0 where visible."""
    out = np.zeros(len(occluded), dtype=np.int64)
    run = 0
    for t, hidden in enumerate(np.asarray(occluded, bool)):
        run = run + 1 if hidden else 0
        out[t] = run
    return out


def fit_decoder(model: WorldModel, train: Sequence[Episode], alpha: float = 1.0) -> Ridge:
    """Ridge from belief features to object position, on visible steps of `train`."""
    feats, targets = [], []
    for ep in train:
        visible = ~np.asarray(ep.truth.get("occluded", ()), bool)
        y = _target(ep)
        feats.append(episode_features(model, ep)[visible])
        targets.append(y[visible])
    x, y = np.concatenate(feats), np.concatenate(targets)
    if len(x) < 2:
        raise BadInputError("belief decoding needs visible steps in the training episodes")
    return Ridge(alpha=alpha).fit(x, y)


def decode_beliefs(
    model: WorldModel,
    train: Sequence[Episode],
    test: Sequence[Episode],
    max_since: int = 20,
    alpha: float = 1.0,
) -> tuple[Ridge, DecodeResult]:
    """Fit on `train`'s visible steps, report error vs steps since occlusion on `test`."""
    probe = fit_decoder(model, train, alpha)
    mean = np.concatenate([_target(ep) for ep in train]).mean(0)
    total = np.zeros(max_since)
    count = np.zeros(max_since, dtype=np.int64)
    visible_err, baseline_err, decoded = [], [], []
    for ep in test:
        y = _target(ep)
        pred = probe.predict(episode_features(model, ep))
        decoded.append(pred.astype(np.float32))
        err = np.linalg.norm(pred - y, axis=1)
        since = steps_since_occlusion(ep.truth["occluded"])
        visible_err.extend(err[since == 0])
        hidden = (since > 0) & (since <= max_since)
        np.add.at(total, since[hidden] - 1, err[hidden])
        np.add.at(count, since[hidden] - 1, 1)
        baseline_err.extend(np.linalg.norm(y[since > 0] - mean, axis=1))
    with np.errstate(invalid="ignore"):
        error = total / count
    nan = float("nan")
    return probe, DecodeResult(
        np.arange(1, max_since + 1),
        error,
        count,
        float(np.mean(visible_err)) if visible_err else nan,
        float(np.mean(baseline_err)) if baseline_err else nan,
        decoded,
    )


# -- imagined futures --------------------------------------------------------------------


@dataclass(frozen=True)
class Futures:
    mean: np.ndarray  # (T, H, 2) mean decoded position of the N rollouts from step t
    spread: np.ndarray  # (T, H) RMS distance of the rollouts' positions from their mean


def imagined_futures(
    model: WorldModel,
    probe: Ridge,
    ep: Episode,
    samples: int = 8,
    horizon: int = 10,
    seed: int = 0,
) -> Futures:
    """From every step t, `samples` prior rollouts with the recorded actions (sampled latents),
    decoded to object positions by the belief probe; NaN past the episode's end."""
    generator = torch.Generator().manual_seed(seed)
    steps = ep.length
    mean = np.full((steps, horizon, 2), np.nan, dtype=np.float32)
    spread = np.full((steps, horizon), np.nan, dtype=np.float32)
    with torch.inference_mode():
        batch = pad_batch([ep])
        traj = _filter(model, batch)
        idx = np.minimum(np.arange(steps)[:, None] + np.arange(1, horizon + 1), steps - 1)
        acts = batch.action[0, torch.from_numpy(idx)]  # (T, H, A)
        # every start repeated `samples` times: (T*N, ...)
        state = {
            "deter": traj.deter[0].repeat_interleave(samples, 0),
            "stoch": traj.stoch[0].repeat_interleave(samples, 0),
        }
        imag = imagine(
            model.cell,
            state,
            acts.repeat_interleave(samples, 0),
            posterior="sample",
            generator=generator,
        )
        feats = belief_features(imag.deter, imag.prior).double().numpy()  # (T*N, H, F)
    pos = probe.predict(feats.reshape(-1, feats.shape[-1])).reshape(steps, samples, horizon, 2)
    centre = pos.mean(1)  # (T, H, 2)
    rms = np.sqrt(((pos - centre[:, None]) ** 2).sum(-1).mean(1))  # (T, H)
    valid = np.arange(steps)[:, None] + np.arange(1, horizon + 1) < steps
    mean[valid] = centre[valid]
    spread[valid] = rms[valid]
    return Futures(mean, spread)


# -- dropout drift -----------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    """How far the belief wandered while frames were withheld, one episode."""

    gap_steps: int
    resume_correction: float  # correction at the first seen step after the gap(s), mean
    gap_pred_error: float  # mean decode error of the prior during the gap
    filter_pred_error: float  # the same steps with frames seen, for scale


def dropout_drift(
    hidden: np.ndarray,
    probe_metrics: dict[str, np.ndarray],
    filter_metrics: dict[str, np.ndarray],
) -> Drift:
    """Compare a dropout trace with the filter trace of the same episode. `hidden` (T,) marks
    the withheld steps; resumption steps are the first seen step after each hidden run."""
    hidden = np.asarray(hidden, bool)
    resume = np.flatnonzero(~hidden[1:] & hidden[:-1]) + 1
    nan = float("nan")
    gap_err = probe_metrics["recon_error"][hidden]
    return Drift(
        gap_steps=int(hidden.sum()),
        resume_correction=float(np.mean(probe_metrics["correction"][resume]))
        if len(resume)
        else nan,
        gap_pred_error=float(np.nanmean(gap_err)) if len(gap_err) else nan,
        filter_pred_error=float(np.nanmean(filter_metrics["recon_error"][hidden]))
        if hidden.any()
        else nan,
    )
