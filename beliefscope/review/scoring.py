"""How well flags find what they should, measured against ground truth.

A reappearance is the first visible step after at least `min_hidden` occluded steps; it is a
slip reappearance when the object was kicked while hidden (any `slip` step in the occlusion
and up to the reappearance). A reappearance is found when a flag overlaps its window
[fv - 1, fv + 4]; a flag is right when it overlaps any reappearance's window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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


@dataclass(frozen=True)
class Score:
    """Scores of one checkpoint; NaN where a figure is undefined (no events, no flags)."""

    slip_recall: float
    reappearance_recall: float
    precision: float
    slip_auc: float
    episode_ap: float
    slip_events: int
    plain_events: int
    flags: int
    episodes: int
    slip_episodes: int


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


def score(episodes: Sequence[EpisodeTruth], window: tuple[int, int] = WINDOW) -> Score:
    """Score one checkpoint's flags over its episodes."""
    lo_off, hi_off = window
    found_slip = found_plain = n_flags = right_flags = 0
    slip_peaks: list[float] = []
    plain_peaks: list[float] = []
    priorities, labels = [], []
    for ep in episodes:
        events = reappearances(ep.occluded, ep.slip)
        windows = [(e.t + lo_off, e.t + hi_off) for e in events]
        for event, (lo, hi) in zip(events, windows, strict=True):
            found = _overlaps(ep.flags, lo, hi)
            part = ep.signal[max(lo, 0) : hi + 1]
            part = part[np.isfinite(part)]
            peak = float(part.max()) if len(part) else float("-inf")
            if event.slip:
                found_slip += found
                slip_peaks.append(peak)
            else:
                found_plain += found
                plain_peaks.append(peak)
        n_flags += len(ep.flags)
        right_flags += sum(any(t0 <= hi and t1 >= lo for lo, hi in windows) for t0, t1 in ep.flags)
        priorities.append(ep.priority)
        labels.append(any(e.slip for e in events))
    n_slip, n_plain = len(slip_peaks), len(plain_peaks)
    nan = float("nan")
    return Score(
        slip_recall=found_slip / n_slip if n_slip else nan,
        reappearance_recall=(found_slip + found_plain) / (n_slip + n_plain)
        if n_slip + n_plain
        else nan,
        precision=right_flags / n_flags if n_flags else nan,
        slip_auc=auc(slip_peaks, plain_peaks),
        episode_ap=average_precision(priorities, labels),
        slip_events=n_slip,
        plain_events=n_plain,
        flags=n_flags,
        episodes=len(episodes),
        slip_episodes=int(sum(labels)),
    )
