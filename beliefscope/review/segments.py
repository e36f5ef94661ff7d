"""Rules -> segments, vectorised over many traces at once.

Traces arrive as one concatenated column (`values`, all steps of all traces back to back) with
`offsets` marking where each trace starts, and a `group` per trace (its checkpoint) for
thresholds that are robust per checkpoint. Everything is numpy over whole columns, so a
million stored steps re-flag in well under a second; only the per-trace median (episode
normalisation) and the per-group statistics loop, over traces and checkpoints, not steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from beliefscope.values.review import Rule


@dataclass(frozen=True)
class Segments:
    """Segments found by one rule, as parallel columns; `trace` indexes the input traces."""

    trace: np.ndarray  # (S,) int64
    t0: np.ndarray  # (S,) int64, first step (inclusive, relative to the trace)
    t1: np.ndarray  # (S,) int64, last step (inclusive)
    peak: np.ndarray  # (S,) float64, highest raw metric value inside [t0, t1]
    peak_t: np.ndarray  # (S,) int64, step of that peak (the first, on ties)
    threshold: np.ndarray  # (S,) float64, the threshold the trace was held to (normalised units)

    def __len__(self) -> int:
        return len(self.trace)


def single(values: np.ndarray) -> np.ndarray:
    """Offsets for one trace."""
    return np.array([0, len(values)], dtype=np.int64)


def episode_normalise(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Each trace minus its own median of finite values (a trace with none stays NaN)."""
    out = np.array(values, dtype=np.float64)
    for a, b in zip(offsets[:-1], offsets[1:], strict=True):
        chunk = out[a:b]
        finite = chunk[np.isfinite(chunk)]
        if len(finite):
            chunk -= np.median(finite)
    return out


def group_thresholds(
    rule: Rule, values: np.ndarray, offsets: np.ndarray, group: np.ndarray
) -> np.ndarray:
    """The threshold each trace is held to, (n_traces,): absolute, or computed over the finite
    (normalised) values of all traces of the same group. A group with no finite value gets +inf."""
    n = len(offsets) - 1
    if rule.mode == "absolute":
        return np.full(n, rule.threshold)
    lengths = np.diff(offsets)
    step_group = np.repeat(group, lengths)  # (N,)
    out = np.full(n, np.inf)
    for g in np.unique(group):
        x = values[step_group == g]
        x = x[np.isfinite(x)]
        if not len(x):
            continue
        if rule.mode == "mad":
            median = np.median(x)
            level = median + rule.threshold * np.median(np.abs(x - median))
        else:
            level = np.percentile(x, rule.threshold)
        out[group == g] = level
    return out


def runs(
    marked: np.ndarray, offsets: np.ndarray, min_duration: int, merge_gap: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of marked steps that never cross a trace boundary: keep those of at least
    `min_duration` steps, then merge kept runs at most `merge_gap` steps apart.

    Returns (trace index, start, end) with start/end inclusive and global (into `marked`).
    """
    n = len(marked)
    first = np.zeros(n, dtype=bool)
    first[offsets[:-1][offsets[:-1] < n]] = True
    last = np.zeros(n, dtype=bool)
    last[offsets[1:][offsets[1:] > 0] - 1] = True
    prev = np.concatenate(([False], marked[:-1])) & ~first
    nxt = np.concatenate((marked[1:], [False])) & ~last
    start = np.flatnonzero(marked & ~prev)
    end = np.flatnonzero(marked & ~nxt)
    keep = end - start + 1 >= min_duration
    start, end = start[keep], end[keep]
    trace = np.searchsorted(offsets, start, side="right") - 1
    if len(start) > 1:
        join = (trace[1:] == trace[:-1]) & (start[1:] - end[:-1] - 1 <= merge_gap)
        head = np.concatenate(([True], ~join))
        last_of = np.concatenate((~join, [True]))
        start, end, trace = start[head], end[last_of], trace[head]
    return trace.astype(np.int64), start.astype(np.int64), end.astype(np.int64)


def peaks(values: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Highest value and its (first) global index inside each [start, end]; NaN is ignored."""
    if not len(start):
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    clean = np.where(np.isnan(values), -np.inf, values)
    length = end - start + 1
    seg = np.repeat(np.arange(len(start)), length)  # (M,) segment id of each covered step
    idx = np.repeat(start - np.cumsum(length) + length, length) + np.arange(length.sum())
    top = np.maximum.reduceat(clean[idx], np.cumsum(length) - length)
    is_top = clean[idx] == top[seg]
    # first covered step equal to its segment's top
    first_top = np.full(len(start), -1, dtype=np.int64)
    hit = np.flatnonzero(is_top)
    order = np.unique(seg[hit], return_index=True)[1]
    first_top[seg[hit[order]]] = idx[hit[order]]
    return np.where(np.isneginf(top), np.nan, top), first_top


def apply_rule(
    rule: Rule,
    values: np.ndarray,
    offsets: np.ndarray | None = None,
    group: np.ndarray | None = None,
) -> Segments:
    """Flag segments of `rule` over traces concatenated in `values` (see the module doc)."""
    values = np.asarray(values, dtype=np.float64)
    offsets = single(values) if offsets is None else np.asarray(offsets, dtype=np.int64)
    assert offsets[0] == 0 and offsets[-1] == len(values), (offsets[:1], offsets[-1:], values.shape)
    n_traces = len(offsets) - 1
    group = np.zeros(n_traces, dtype=np.int64) if group is None else np.asarray(group)
    assert group.shape == (n_traces,), (group.shape, n_traces)
    scored = episode_normalise(values, offsets) if rule.normalise == "episode" else values
    level = group_thresholds(rule, scored, offsets, group)
    step_level = np.repeat(level, np.diff(offsets))
    with np.errstate(invalid="ignore"):
        marked = scored > step_level
        if rule.floor is not None:
            marked &= values >= rule.floor
    trace, start, end = runs(marked, offsets, rule.min_duration, rule.merge_gap)
    peak, peak_at = peaks(values, start, end)
    base = offsets[trace]
    return Segments(
        trace=trace,
        t0=start - base,
        t1=end - base,
        peak=peak,
        peak_t=peak_at - base,
        threshold=level[trace],
    )
