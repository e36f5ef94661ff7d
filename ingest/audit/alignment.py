"""Alignment checks: do the replay's actions, rewards and continuation flags sit at the steps
the model expects? Each is a counterfactual: shift the series and see whether the model's own
error drops. The model's convention is the canonical one: `action[t]` led to obs t, `reward[t]`
was received on arriving at obs t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from beliefscope.values.audit import Check
from ingest.audit.filtered import Filtered, sentence, too_few
from ingest.audit.stats import Z, mean_se, parabola_vertex

ACTION_SHIFTS = (-2, -1, 0, 1, 2)
MIN_GAIN = 0.02
"""A shift must change the mean KL by at least this fraction to count (besides Z x noise)."""

LAGS = np.array([-2, -1, 0, 1, 2])
MIN_SKILL = 0.25
"""A head must explain this share of its target's variance before its lag means anything."""
MAX_LAG_SE = 0.25
"""The fitted lag must be this precise (steps), and clear of the nearest half step by one
standard error, for a verdict either way."""


def _steps(n: int) -> str:
    return f"{n} step" if abs(n) == 1 else f"{n} steps"


def action_alignment(f: Filtered) -> Check:
    """Re-filter with the actions fed -2..+2 steps late; the lowest mean KL says which action
    the model finds to have led to each frame."""
    rule = (
        f"fail when a shift lowers the mean KL by more than {Z:g} x its noise and "
        f"{MIN_GAIN:.0%}; pass when shifting by +-1 raises it by as much"
    )
    mask = f.steady(max(ACTION_SHIFTS))
    short = too_few(
        "action_alignment", int(mask.sum()), "steps 2 or more inside their episode", rule
    )
    if short:
        return short
    kls = {s: f.kl if s == 0 else f.rerun(action=f.shifted_actions(s)) for s in ACTION_SHIFTS}
    kl = {s: v.float().cpu().numpy() for s, v in kls.items()}
    means = {s: float(kl[s][mask].mean()) for s in ACTION_SHIFTS}
    # paired over blocks of steps: how much worse (positive) each shift is than the replay's
    worse = {s: mean_se(kl[s] - kl[0], mask) for s in ACTION_SHIFTS if s}
    floor = MIN_GAIN * means[0]
    best = min(ACTION_SHIFTS, key=lambda s: means[s])
    numbers = {
        "shifts": list(ACTION_SHIFTS),
        "mean_kl": [means[s] for s in ACTION_SHIFTS],
        "kl_increase": [None if s == 0 else worse[s].mean for s in ACTION_SHIFTS],
        "noise": [None if s == 0 else worse[s].se for s in ACTION_SHIFTS],
        "steps": int(mask.sum()),
        "best_shift": best,
    }
    shown = " / ".join(f"{means[s]:.2f}" for s in ACTION_SHIFTS)
    if best != 0:
        gain = worse[best]
        if (-gain.mean) > max(Z * gain.se, floor):
            source = f"action[t{-best:+d}]"
            drop = kl[0] - kl[best]
            drop[~mask] = -np.inf
            top = np.argsort(drop, axis=None)[::-1][:3]
            where = tuple(
                f.where(
                    int(r),
                    int(t),
                    f"KL {kl[0][r, t]:.1f} as recorded, {kl[best][r, t]:.1f} with {source}",
                )
                for r, t in zip(*np.unravel_index(top, drop.shape), strict=True)
            )
            late = "late" if best < 0 else "early"
            return Check(
                "action_alignment",
                "fail",
                f"The model explains the frames best when step t is fed {source} (mean KL "
                f"{means[best]:.2f} vs {means[0]:.2f} nats as recorded, noise {gain.se:.3f}): "
                f"the replay's actions sit {_steps(abs(best))} {late} against its frames, where "
                "the model expects action[t] to be the one that led to obs t.",
                f"actions off by {_steps(abs(best))} ({late}): {source} led to obs t",
                rule,
                numbers,
                where,
            )
    if all(worse[s].exceeds(floor) for s in (-1, 1)):
        return Check(
            "action_alignment",
            "pass",
            f"The actions as recorded give the lowest KL (mean by shift -2..+2: {shown} nats): "
            "action[t] led to obs t, as the model expects.",
            rule=rule,
            numbers=numbers,
        )
    return Check(
        "action_alignment",
        "inconclusive",
        f"Shifting the actions hardly changes the KL (mean by shift -2..+2: {shown} nats, "
        f"noise {max(w.se for w in worse.values()):.3f}): this model's prior makes little use of "
        "the actions, so their alignment cannot be told.",
        rule=rule,
        numbers=numbers,
    )


def _lagged(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Squared error of pred[t] against target[t + lag] for each of LAGS: (L, B, T)."""
    steps = target.shape[1]
    index = np.clip(np.arange(steps)[None, :] + LAGS[:, None], 0, steps - 1)  # (L, T)
    return (pred[None] - target[:, index].transpose(1, 0, 2)) ** 2  # (B, L, T) -> (L, B, T)


def _changes(x: np.ndarray) -> np.ndarray:
    return np.diff(x, axis=1, prepend=x[:, :1])


@dataclass(frozen=True)
class _Lag:
    """One head's verdict: a clause of the finding, and the steps that show a shift."""

    status: str
    clause: str
    numbers: dict
    corruption: str | None = None
    steps: tuple[tuple[int, int, str], ...] = ()  # (row, t, note)


def _lag_verdict(
    label: str, series: str, pred: np.ndarray, target: np.ndarray, mask: np.ndarray
) -> _Lag:
    """One head's error vs the lag of its target:
    `pred` (B, T) against `target` (B, T) read at t + lag. The lag is fitted on the series'
    step-to-step changes: most of a head's error varies slowly and says nothing about timing,
    and differencing removes it (the standard error drops several-fold)."""
    sq = _lagged(pred, target)
    mse = [float(sq[i][mask].mean()) for i in range(len(LAGS))]
    variance = float(target[mask].var())
    numbers: dict = {"lags": LAGS.tolist(), "mse": mse, "variance": variance}
    if variance < 1e-12:
        return _Lag("inconclusive", f"the {label} does not vary in the sample", numbers)
    skill = 1.0 - min(mse) / variance
    numbers["skill"] = skill
    if skill < MIN_SKILL:
        clause = (
            f"the {label} head explains only {max(skill, 0.0):.0%} of the {label}'s variance, "
            f"too little to tell a shifted {label} from noise"
        )
        return _Lag("inconclusive", clause, numbers)
    vertex = parabola_vertex(LAGS, _lagged(_changes(pred), _changes(target)), mask)
    numbers.update(lag=vertex.lag, lag_se=vertex.se)
    fitted = f"fitted lag {vertex.lag:+.2f} +- {vertex.se:.2f} steps"
    lag = int(np.round(vertex.lag)) if np.isfinite(vertex.lag) else 0
    clear = 0.5 - abs(vertex.lag - lag)  # distance from the nearest half step (NaN: no fit)
    if not clear > vertex.se or vertex.se > MAX_LAG_SE or abs(lag) > LAGS.max():
        clause = f"the {label} error's minimum is too uncertain ({fitted})"
        return _Lag("inconclusive", clause, numbers)
    if lag == 0:
        return _Lag("pass", f"the {label} head matches {series}[t] ({fitted})", numbers)
    clause = (
        f"the {label} head matches {series}[t{lag:+d}] best ({fitted}; MSE at lags -1/0/+1: "
        f"{mse[1]:.3g} / {mse[2]:.3g} / {mse[3]:.3g}): the replay stores each {label} "
        f"{_steps(abs(lag))} {'late' if lag > 0 else 'early'}"
    )
    order = list(LAGS)
    gain = np.where(mask, sq[order.index(0)] - sq[order.index(lag)], -np.inf)
    top = np.argsort(gain, axis=None)[::-1][:3]
    steps = tuple(
        (int(r), int(t), f"{label} {target[r, t]:.3g}, predicted {pred[r, t]:.3g}")
        for r, t in zip(*np.unravel_index(top, gain.shape), strict=True)
    )
    corruption = f"{label}s shifted by {lag:+d} {_steps(abs(lag)).split()[1]}"
    return _Lag("fail", clause, numbers, corruption, steps)


def reward_alignment(f: Filtered) -> Check:
    """Reward-head (and continuation-head) error with the recorded series read -2..+2 steps
    away; the minimum of a parabola fitted to error vs lag is the lag, with a bootstrap
    standard error. A continuation flag that does not vary (no terminal steps) is not checked;
    it can only turn the verdict into a failure."""
    rule = (
        f"inconclusive unless the head explains {MIN_SKILL:.0%} of the variance and the lag "
        f"fitted on the changes has a standard error below {MAX_LAG_SE} steps and one standard "
        "error clear of the nearest half step; fail when it rounds to a lag other than 0"
    )
    if "reward" not in f.heads:
        return Check(
            "reward_alignment",
            "inconclusive",
            "The model has no reward head, so reward alignment cannot be checked.",
            rule=rule,
        )
    # a lag of 2 and the change before it stay clear of the segment's first step, whose reward
    # is the reset's placeholder (0), not a reward received
    mask = f.steady(int(np.abs(LAGS).max()) + 2)
    short = too_few(
        "reward_alignment", int(mask.sum()), "steps 4 or more inside their episode", rule
    )
    if short:
        return short
    feat = f.model.feat(f.traj.deter, f.traj.stoch)
    heads = {"reward": ("reward", f.model.reward, f.batch.reward)}
    if "cont" in f.heads:
        heads["cont"] = ("continuation", f.model.cont, f.batch.cont)
    results = {
        name: _lag_verdict(label, name, _host(head(feat)), _host(target), mask)
        for name, (label, head, target) in heads.items()
    }
    status = results["reward"].status
    if "cont" in results and results["cont"].status == "fail":
        status = "fail"
    finding = "; ".join(r.clause for r in results.values())
    return Check(
        "reward_alignment",
        status,  # type: ignore[arg-type]
        sentence(finding) + ".",
        "; ".join(r.corruption for r in results.values() if r.corruption) or None,
        rule,
        {name: r.numbers for name, r in results.items()},
        tuple(f.where(r, t, note) for lag in results.values() for r, t, note in lag.steps),
    )


def _host(x: torch.Tensor) -> np.ndarray:
    return x.float().cpu().numpy().astype(np.float64)
