"""How well flags find what they should, measured against ground truth.

A reappearance is the first visible step after at least `min_hidden` occluded steps; it is a
slip reappearance when the object was kicked while hidden (any `slip` step in the occlusion
and up to the reappearance). A reappearance is found when a flag overlaps its window
[fv - 1, fv + 4]; a flag is right when it overlaps any reappearance's window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from beliefscope.values.review import Score

WINDOW = (-1, 4)
"""Steps around the first visible step in which a flag counts as finding a reappearance."""
MIN_HIDDEN = 2


@dataclass(frozen=True)
class Reappearance:
    t: int  # first visible step
    hidden_from: int  # first occluded step of the occlusion it ends
    slip: bool


@dataclass(frozen=True)
class EpisodeTruth:
    """What scoring needs of one episode's trace: ground truth, the signal, the flags."""

    occluded: np.ndarray  # (T,) bool
    slip: np.ndarray  # (T,) bool: a slip kick was applied at this step
    signal: np.ndarray  # (T,) float: the metric the rule reads (for the AUC)
    flags: Sequence[tuple[int, int]]  # (t0, t1) inclusive
    priority: float = 0.0  # the episode's review priority (for the ranking AP)


FIGURES = ("slip_recall", "slip_precision", "plain_flagged", "precision", "slip_auc")
"""The figures `bootstrap` gives intervals for."""


def reappearances(
    occluded: np.ndarray, slip: np.ndarray | None = None, min_hidden: int = MIN_HIDDEN
) -> list[Reappearance]:
    """Reappearance events of one episode, in time order."""
    occ = np.asarray(occluded, dtype=bool)
    kicked = np.zeros(len(occ), bool) if slip is None else np.asarray(slip) != 0
    padded = np.concatenate(([False], occ, [False])).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)  # first occluded step of each run
    ends = np.flatnonzero(edges == -1)  # first step after the run
    events = []
    for a, b in zip(starts, ends, strict=True):
        if b - a >= min_hidden and b < len(occ):
            events.append(Reappearance(int(b), int(a), bool(kicked[a : b + 1].any())))
    return events


def _overlaps(flags: Sequence[tuple[int, int]], lo: int, hi: int) -> bool:
    return any(t0 <= hi and t1 >= lo for t0, t1 in flags)


def auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """P(a positive scores higher than a negative), ties counting half (Mann-Whitney U)."""
    pos, neg = np.asarray(positive, float), np.asarray(negative, float)
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def average_precision(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the precision-recall steps of a ranking by score (tied scores enter the
    ranking together): sum over thresholds of (recall gain) x precision."""
    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    if not y.any():
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    cut = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # last index of each tie group
    precision = tp[cut] / (cut + 1)
    recall_gain = np.diff(np.r_[0, tp[cut]]) / y.sum()
    return float((recall_gain * precision).sum())


@dataclass(frozen=True)
class _Tally:
    """One episode's contribution to a score."""

    found_slip: int
    found_plain: int
    flags: int
    right_flags: int
    slip_flags: int
    slip_peaks: tuple[float, ...]
    plain_peaks: tuple[float, ...]
    priority: float
    has_slip: bool


def _tally(ep: EpisodeTruth, window: tuple[int, int]) -> _Tally:
    lo_off, hi_off = window
    events = reappearances(ep.occluded, ep.slip)
    windows = [(e.t + lo_off, e.t + hi_off) for e in events]
    found = {"slip": 0, "plain": 0}
    peaks: dict[str, list[float]] = {"slip": [], "plain": []}
    for event, (lo, hi) in zip(events, windows, strict=True):
        kind = "slip" if event.slip else "plain"
        found[kind] += _overlaps(ep.flags, lo, hi)
        part = ep.signal[max(lo, 0) : hi + 1]
        part = part[np.isfinite(part)]
        peaks[kind].append(float(part.max()) if len(part) else float("-inf"))
    slip_windows = [w for w, e in zip(windows, events, strict=True) if e.slip]
    return _Tally(
        found_slip=found["slip"],
        found_plain=found["plain"],
        flags=len(ep.flags),
        right_flags=sum(_overlaps(windows, t0, t1) for t0, t1 in ep.flags),
        slip_flags=sum(_overlaps(slip_windows, t0, t1) for t0, t1 in ep.flags),
        slip_peaks=tuple(peaks["slip"]),
        plain_peaks=tuple(peaks["plain"]),
        priority=ep.priority,
        has_slip=bool(slip_windows),
    )


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


def _combine(tallies: Sequence[_Tally]) -> Score:
    slip_peaks = [p for t in tallies for p in t.slip_peaks]
    plain_peaks = [p for t in tallies for p in t.plain_peaks]
    n_slip, n_plain = len(slip_peaks), len(plain_peaks)
    found_slip = sum(t.found_slip for t in tallies)
    found_plain = sum(t.found_plain for t in tallies)
    flags = sum(t.flags for t in tallies)
    return Score(
        slip_recall=_ratio(found_slip, n_slip),
        reappearance_recall=_ratio(found_slip + found_plain, n_slip + n_plain),
        precision=_ratio(sum(t.right_flags for t in tallies), flags),
        slip_auc=auc(slip_peaks, plain_peaks),
        episode_ap=average_precision([t.priority for t in tallies], [t.has_slip for t in tallies]),
        slip_events=n_slip,
        plain_events=n_plain,
        flags=flags,
        episodes=len(tallies),
        slip_episodes=sum(t.has_slip for t in tallies),
        slip_precision=_ratio(sum(t.slip_flags for t in tallies), flags),
        plain_flagged=_ratio(found_plain, n_plain),
    )


def score(
    episodes: Sequence[EpisodeTruth],
    window: tuple[int, int] = WINDOW,
    *,
    resamples: int = 0,
    seed: int = 0,
) -> Score:
    """Score one checkpoint's flags over its episodes; with `resamples`, add 95% bootstrap
    intervals of `FIGURES` from resampling whole episodes (events in one episode are not
    independent, and with a few dozen events an interval is the honest way to quote them)."""
    tallies = [_tally(ep, window) for ep in episodes]
    point = _combine(tallies)
    if resamples <= 0 or not tallies:
        return point
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in FIGURES}
    for _ in range(resamples):
        sample = _combine([tallies[i] for i in rng.integers(0, len(tallies), len(tallies))])
        for name in FIGURES:
            draws[name].append(getattr(sample, name))
    intervals = {}
    for name, values in draws.items():
        finite = np.asarray(values)[np.isfinite(values)]
        if len(finite):
            intervals[name] = (float(np.quantile(finite, 0.025)), float(np.quantile(finite, 0.975)))
    return replace(point, intervals=intervals)
