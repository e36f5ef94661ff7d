"""Downsampling that keeps what a debugger looks for: spikes, NaN, and both ends.

Plain striding would drop a one-step KL spike; instead each bucket of equal width in t keeps the
steps holding its minimum and its maximum, and its first NaN if it has one. The first and last
points are always kept. Ties go to the earliest step, so the result is deterministic.
"""

from __future__ import annotations

import numpy as np

from beliefscope.errors import BadInputError

MIN_POINTS = 5
"""Smallest `max_points`: both ends plus one bucket's min, max and NaN."""


def minmax_indices(t: np.ndarray, values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices (increasing) of at most `max_points` points of (t, values) that keep every
    bucket's min, max and first NaN. `t` must be increasing."""
    assert t.ndim == 1 and t.shape == values.shape, (t.shape, values.shape)
    if max_points < MIN_POINTS:
        raise BadInputError(f"max_points must be at least {MIN_POINTS}, got {max_points}")
    n = len(t)
    if n <= max_points:
        return np.arange(n)
    inner_t, inner_v = t[1:-1], values[1:-1]
    isnan = np.isnan(inner_v)
    per_bucket = 3 if isnan.any() else 2
    buckets = max(1, (max_points - 2) // per_bucket)
    bucket = _bucket_of(inner_t, buckets)
    low = np.where(isnan, np.inf, inner_v)
    high = np.where(isnan, np.inf, -inner_v)
    kept = [
        np.array([0, n - 1]),
        1 + _first_per_bucket(bucket, np.lexsort((low, isnan, bucket))),
        1 + _first_per_bucket(bucket, np.lexsort((high, isnan, bucket))),
    ]
    nan_at = np.flatnonzero(isnan)
    if len(nan_at):
        kept.append(1 + nan_at[np.unique(bucket[nan_at], return_index=True)[1]])
    return np.unique(np.concatenate(kept))


def max_per_bucket(
    t: np.ndarray, values: np.ndarray, max_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `values` (n, ...) reduced to at most `max_rows` by the max over buckets of equal
    width in t; returns each bucket's first t and its max (NaN if the bucket holds one)."""
    assert t.ndim == 1 and len(t) == len(values), (t.shape, values.shape)
    if max_rows < 1:
        raise BadInputError(f"max_points must be at least 1, got {max_rows}")
    if len(t) <= max_rows:
        return t, values
    starts = np.flatnonzero(np.r_[True, np.diff(_bucket_of(t, max_rows)) != 0])
    return t[starts], np.maximum.reduceat(values, starts, axis=0)


def _bucket_of(t: np.ndarray, buckets: int) -> np.ndarray:
    """Bucket number of each t for `buckets` buckets of equal width over [t[0], t[-1]]."""
    span = int(t[-1]) - int(t[0]) + 1
    return ((t.astype(np.int64) - int(t[0])) * buckets) // span


def _first_per_bucket(bucket: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The first index in `order` (sorted by bucket first) of every bucket."""
    sorted_bucket = bucket[order]
    return order[np.r_[True, sorted_bucket[1:] != sorted_bucket[:-1]]]
