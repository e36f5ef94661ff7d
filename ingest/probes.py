"""Forensic probes: what-if replays that test a model's memory. Pure computation (model +
episodes in, arrays out); `ingest.probes_cli` stores the results.

- open-loop horizon curve: decode error after imagining h = 1..H steps from many start points;
- belief decoding: a ridge probe from the belief (h_t and the class probabilities) to the
  hidden object's position, fit on some episodes and tested on the occluded steps of others
  against the last visible position and the mean position: does the belief still know where
  the box is while it is hidden? It also gives the belief jump, how far each frame moved the
  decoded position (prior vs posterior features);
- imagined futures: N sampled prior rollouts from each start step with the recorded actions,
  and the spread of the object positions the probe decodes from them;
- dropout drift: how far the belief wandered while frames were withheld (`dropout:*` traces).

`ablate_memory` wraps a model so its dynamics forget everything between steps: the control a
model's memory is measured against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
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

    def __getattr__(self, name: str) -> Any:
        """The cell's optional parts (`action_input`, `kl_terms`) stay its own."""
        return getattr(self._cell, name)


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

KNOWN_TOL = 0.01
"""A hidden object whose true position is within this (m) of where it was last seen is still
knowable from memory; one that moved more while hidden (a slip) is not."""

FitSteps = Literal["known", "visible"]


class RidgeProbe:
    """Linear ridge regression on standardised features, in closed form: a probe must be too
    weak to compute anything itself, only to read out what the belief already holds."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, bias: np.ndarray):
        self.mean, self.scale, self.coef, self.bias = mean, scale, coef, bias

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> RidgeProbe:
        assert x.ndim == 2 and y.ndim == 2 and len(x) == len(y), (x.shape, y.shape)
        mean = x.mean(0)
        scale = x.std(0)
        scale[scale < 1e-8] = 1.0  # constant features carry nothing; keep them finite
        z = (x - mean) / scale
        bias = y.mean(0)
        gram = z.T @ z + alpha * np.eye(z.shape[1])  # (F, F)
        coef = np.linalg.solve(gram, z.T @ (y - bias))  # (F, 2)
        return cls(mean, scale, coef, bias)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.coef + self.bias


@dataclass(frozen=True)
class Occlusions:
    """Per-step occlusion labels of one episode, from its ground truth."""

    since: np.ndarray  # (T,) int: 1 on the first hidden step, 2 on the next, ...; 0 visible
    slip: np.ndarray  # (T,) bool: hidden, and the object moved while hidden (not knowable)
    last_seen: np.ndarray  # (T, 2) the object's position at the last visible step (NaN before)
    position: np.ndarray  # (T, 2) the object's true position

    @property
    def known(self) -> np.ndarray:
        """Steps where the position is visible or where memory could know it."""
        return (self.since == 0) | ~self.slip


def _target(ep: Episode) -> np.ndarray:
    if TARGET not in ep.truth or "occluded" not in ep.truth:
        raise BadInputError(
            "belief decoding needs ground truth 'qpos' and 'occluded'", path=ep.ref.path
        )
    return np.asarray(ep.truth[TARGET], np.float64)[:, TARGET_COLUMNS]


def steps_since_occlusion(occluded: np.ndarray) -> np.ndarray:
    """1 on the first hidden step, 2 on the next, ...; 0 where visible."""
    out = np.zeros(len(occluded), dtype=np.int64)
    run = 0
    for t, hidden in enumerate(np.asarray(occluded, bool)):
        run = run + 1 if hidden else 0
        out[t] = run
    return out


def occlusions(ep: Episode) -> Occlusions:
    """Label every hidden step by whether its occlusion is a slip: at some step of it the
    object was more than KNOWN_TOL from where it was last seen."""
    position = _target(ep)
    since = steps_since_occlusion(ep.truth["occluded"])
    last_seen = np.full_like(position, np.nan)
    slip = np.zeros(len(since), bool)
    seen = np.full(2, np.nan)
    for t in np.flatnonzero(since == 1):  # each occlusion: steps t .. end - 1
        end = t + int(np.argmax(np.r_[since[t:], 0] == 0))
        seen = position[t - 1] if t > 0 else np.full(2, np.nan)
        last_seen[t:end] = seen
        moved = np.linalg.norm(position[t:end] - seen, axis=1) > KNOWN_TOL
        slip[t:end] = bool(moved.any())
    return Occlusions(since, slip, last_seen, position)


@dataclass(frozen=True)
class Beliefs:
    """Where the belief puts the object at every step of one episode, by the probe."""

    post: np.ndarray  # (T, 2) decoded from the posterior features (after the frame)
    prior: np.ndarray  # (T, 2) decoded from the prior features (before the frame)

    @property
    def jump(self) -> np.ndarray:
        """(T,) how far the frame moved the belief of where the object is (m)."""
        return np.linalg.norm(self.post - self.prior, axis=1)


def _episode_features(model: WorldModel, ep: Episode) -> tuple[np.ndarray, np.ndarray]:
    """Posterior and prior belief features of one episode, (T, F) each."""
    with torch.inference_mode():
        traj = _filter(model, pad_batch([ep]))
        post = belief_features(traj.deter, traj.post)[0].double().numpy()
        prior = belief_features(traj.deter, traj.prior)[0].double().numpy()
    return post, prior


def fit_decoder(
    model: WorldModel, train: Sequence[Episode], alpha: float = 1.0, fit: FitSteps = "known"
) -> RidgeProbe:
    """Ridge from belief features to the object's position on `train`'s episodes.

    `known` (default) fits posterior and prior features on every step where the position is
    knowable (visible, or hidden without having moved), so the probe learns to read the
    memory as well as the view; `visible` fits posterior features of visible steps only (a
    probe that reads the view, against which a remembered position looks like drift)."""
    feats, targets = [], []
    for ep in train:
        occ = occlusions(ep)
        post, prior = _episode_features(model, ep)
        rows = occ.known if fit == "known" else occ.since == 0
        feats.append(post[rows])
        targets.append(occ.position[rows])
        if fit == "known":
            feats.append(prior[rows & ~ep.is_first])
            targets.append(occ.position[rows & ~ep.is_first])
    x, y = np.concatenate(feats), np.concatenate(targets)
    if len(x) < 2:
        raise BadInputError("belief decoding needs visible steps in the training episodes")
    return RidgeProbe.fit(x, y, alpha)


def decode_episode(model: WorldModel, probe: RidgeProbe, ep: Episode) -> Beliefs:
    post, prior = _episode_features(model, ep)
    return Beliefs(probe.predict(post), probe.predict(prior))


@dataclass(frozen=True)
class MemoryReport:
    """Belief error (m) on held-out episodes by steps since the object was hidden, for plain
    occlusions (the object stayed put: the last visible position is exact) and slips (it
    moved unseen), beside the two baselines a memory must be judged against."""

    since: np.ndarray  # (K,) 1..K
    plain: np.ndarray  # (K,) mean error of the posterior belief, plain occlusions
    plain_count: np.ndarray  # (K,)
    slip: np.ndarray  # (K,) the same on slip occlusions
    slip_count: np.ndarray  # (K,)
    last_seen_slip: np.ndarray  # (K,) error of the last visible position on slips (plain: 0)
    visible_error: float  # mean error on visible steps
    mean_baseline: float  # error of the training-mean position on hidden steps
    decoded: list[Beliefs]

    def to_dict(self) -> dict[str, Any]:
        def clean(values: np.ndarray) -> list:
            return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, float)]

        return {
            "since_occlusion": self.since.tolist(),
            "plain_error": clean(self.plain),
            "plain_count": self.plain_count.tolist(),
            "slip_error": clean(self.slip),
            "slip_count": self.slip_count.tolist(),
            "last_seen_slip_error": clean(self.last_seen_slip),
            "visible_error": float(self.visible_error),
            "mean_baseline_error": float(self.mean_baseline),
        }


def memory_report(
    model: WorldModel,
    probe: RidgeProbe,
    test: Sequence[Episode],
    train_mean: np.ndarray,
    max_since: int = 20,
) -> MemoryReport:
    sums = {k: np.zeros(max_since) for k in ("plain", "slip", "seen_slip")}
    counts = {k: np.zeros(max_since, np.int64) for k in ("plain", "slip")}
    visible, baseline, decoded = [], [], []
    for ep in test:
        occ = occlusions(ep)
        beliefs = decode_episode(model, probe, ep)
        decoded.append(beliefs)
        err = np.linalg.norm(beliefs.post - occ.position, axis=1)
        seen_err = np.linalg.norm(occ.last_seen - occ.position, axis=1)
        visible.extend(err[occ.since == 0])
        hidden = (occ.since > 0) & (occ.since <= max_since)
        baseline.extend(np.linalg.norm(occ.position[occ.since > 0] - train_mean, axis=1))
        for kind, rows in (("plain", hidden & ~occ.slip), ("slip", hidden & occ.slip)):
            np.add.at(sums[kind], occ.since[rows] - 1, err[rows])
            np.add.at(counts[kind], occ.since[rows] - 1, 1)
        rows = hidden & occ.slip
        np.add.at(sums["seen_slip"], occ.since[rows] - 1, seen_err[rows])
    nan = float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        return MemoryReport(
            since=np.arange(1, max_since + 1),
            plain=sums["plain"] / counts["plain"],
            plain_count=counts["plain"],
            slip=sums["slip"] / counts["slip"],
            slip_count=counts["slip"],
            last_seen_slip=sums["seen_slip"] / counts["slip"],
            visible_error=float(np.mean(visible)) if visible else nan,
            mean_baseline=float(np.mean(baseline)) if baseline else nan,
            decoded=decoded,
        )


def decode_beliefs(
    model: WorldModel,
    train: Sequence[Episode],
    test: Sequence[Episode],
    max_since: int = 20,
    alpha: float = 1.0,
    fit: FitSteps = "known",
) -> tuple[RidgeProbe, MemoryReport]:
    """Fit the probe on `train`, report the belief's memory on `test`."""
    probe = fit_decoder(model, train, alpha, fit)
    mean = np.concatenate([_target(ep) for ep in train]).mean(0)
    return probe, memory_report(model, probe, test, mean, max_since)


# -- imagined futures --------------------------------------------------------------------


@dataclass(frozen=True)
class Futures:
    mean: np.ndarray  # (T, H, 2) mean decoded position of the N rollouts from step t
    spread: np.ndarray  # (T, H) RMS distance of the rollouts' positions from their mean


def imagined_futures(
    model: WorldModel,
    probe: RidgeProbe,
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
