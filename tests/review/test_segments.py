"""Segment extraction against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from beliefscope.review.segments import apply_rule, episode_normalise, runs
from beliefscope.values.review import make_rule


def rule(**kw):
    base = {"name": "r", "metric": "kl", "threshold": 1.0, "mode": "absolute", "min_duration": 1}
    return make_rule({**base, **kw})


def spans(seg):
    return list(zip(seg.trace.tolist(), seg.t0.tolist(), seg.t1.tolist(), strict=True))


def test_absolute_threshold_min_duration_and_peaks():
    x = np.array([0, 2, 3, 0, 5, 0, 2, 2, 2, 0], float)
    seg = apply_rule(rule(min_duration=2), x)
    # runs above 1: [1,2] (2 steps), [4] (1 step, too short), [6,8] (3 steps)
    assert spans(seg) == [(0, 1, 2), (0, 6, 8)]
    assert seg.peak.tolist() == [3.0, 2.0]
    assert seg.peak_t.tolist() == [2, 6]  # first of the tied 2s


def test_merge_gap_joins_kept_runs_only():
    x = np.array([2, 2, 0, 2, 2, 0, 0, 2, 2, 0, 9], float)
    assert spans(apply_rule(rule(min_duration=2, merge_gap=0), x)) == [
        (0, 0, 1),
        (0, 3, 4),
        (0, 7, 8),
    ]
    assert spans(apply_rule(rule(min_duration=2, merge_gap=1), x)) == [(0, 0, 4), (0, 7, 8)]
    assert spans(apply_rule(rule(min_duration=2, merge_gap=2), x)) == [(0, 0, 8)]
    # the lone 9 at t=10 is a 1-step run: dropped before merging, so it never joins
    merged = apply_rule(rule(min_duration=2, merge_gap=5), x)
    assert spans(merged) == [(0, 0, 8)]
    assert merged.peak.tolist() == [2.0]


def test_runs_never_cross_trace_boundaries():
    x = np.array([0, 2, 2, 2, 2, 0], float)
    offsets = np.array([0, 3, 6])
    seg = apply_rule(rule(min_duration=2, merge_gap=3), x, offsets)
    # trace 0 = [0,2,2] -> its steps 1..2 ; trace 1 = [2,2,0] -> its steps 0..1; not merged
    assert spans(seg) == [(0, 1, 2), (1, 0, 1)]


def test_empty_traces_and_nan_are_not_marked():
    x = np.array([2, np.nan, 2, 2, 2], float)
    offsets = np.array([0, 0, 5, 5])
    seg = apply_rule(rule(min_duration=2), x, offsets)
    assert spans(seg) == [(1, 2, 4)]
    merged = apply_rule(rule(min_duration=1, merge_gap=1), x, offsets)
    assert spans(merged) == [(1, 0, 4)]
    assert merged.peak.tolist() == [2.0] and merged.peak_t.tolist() == [0]


def test_robust_mad_threshold_per_checkpoint_group():
    # checkpoint 0: median 1, MAD 0 -> level 1 ; checkpoint 1: values 10, 12, 10, 14, 10, 30:
    a = np.array([1, 1, 1, 1, 5, 5, 1], float)
    b = np.array([10, 12, 10, 14, 10, 30], float)
    x, offsets, group = np.r_[a, b], np.array([0, 7, 13]), np.array([0, 1])
    # b: median 11, |b - 11| = 1,1,1,3,1,19 -> MAD 1; k=2 -> level 13: only 14 and 30
    seg = apply_rule(rule(mode="mad", threshold=2.0), x, offsets, group)
    assert spans(seg) == [(0, 4, 5), (1, 3, 3), (1, 5, 5)]
    assert seg.threshold.tolist() == [1.0, 13.0, 13.0]


def test_floor_stops_a_collapsed_checkpoint_from_flagging_everything():
    # KL sitting at the free-bits level: tiny MAD, so k x MAD is barely above the median
    rng = np.random.default_rng(0)
    x = 1.0 + 0.01 * rng.standard_normal(500)
    x[100:103] = 1.2
    no_floor = apply_rule(rule(mode="mad", threshold=5.0, min_duration=2), x)
    assert len(no_floor) >= 1
    assert len(apply_rule(rule(mode="mad", threshold=5.0, min_duration=2, floor=2.0), x)) == 0
    x[300:304] = 6.0
    floored = apply_rule(rule(mode="mad", threshold=5.0, min_duration=2, floor=2.0), x)
    assert spans(floored) == [(0, 300, 303)]


def test_percentile_threshold():
    x = np.arange(100, dtype=float)  # p90 = 89.1: steps 90..99 pass
    seg = apply_rule(rule(mode="percentile", threshold=90.0), x)
    assert spans(seg) == [(0, 90, 99)]
    assert seg.peak.tolist() == [99.0] and seg.peak_t.tolist() == [99]


def test_episode_normalisation_subtracts_each_trace_median_but_floor_stays_raw():
    quiet = np.array([1, 1, 1, 4, 4, 1, 1], float)  # median 1: spike +3
    busy = np.array([5, 5, 5, 7, 7, 5, 5], float)  # median 5: spike +2
    x, offsets = np.r_[quiet, busy], np.array([0, 7, 14])
    np.testing.assert_array_equal(
        episode_normalise(x, offsets), [0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 2, 2, 0, 0]
    )
    raw = apply_rule(rule(threshold=4.5, min_duration=2), x, offsets)
    assert spans(raw) == [(1, 0, 6)]  # absolute: the busy trace is above everywhere
    norm = apply_rule(rule(threshold=2.5, min_duration=2, normalise="episode"), x, offsets)
    assert spans(norm) == [(0, 3, 4)]
    assert norm.peak.tolist() == [4.0]  # the peak is reported raw
    floored = apply_rule(
        rule(threshold=1.5, min_duration=2, normalise="episode", floor=5.0), x, offsets
    )
    assert spans(floored) == [(1, 3, 4)]


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_runs_match_a_plain_loop(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 40, size=30)
    offsets = np.r_[0, np.cumsum(lengths)]
    marked = rng.random(offsets[-1]) < 0.4
    min_d, gap = int(rng.integers(1, 4)), int(rng.integers(0, 3))
    expected = []
    for i, (a, b) in enumerate(zip(offsets[:-1], offsets[1:], strict=True)):
        found, t = [], a
        while t < b:
            if marked[t]:
                s = t
                while t < b and marked[t]:
                    t += 1
                if t - s >= min_d:
                    found.append([s, t - 1])
            t += 1
        merged = []
        for s, e in found:
            if merged and s - merged[-1][1] - 1 <= gap:
                merged[-1][1] = e
            else:
                merged.append([s, e])
        expected += [(i, s, e) for s, e in merged]
    trace, start, end = runs(marked, offsets, min_d, gap)
    assert list(zip(trace.tolist(), start.tolist(), end.tolist(), strict=True)) == expected
