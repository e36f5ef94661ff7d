"""Chronic diagnostics on constructed correction columns."""

from __future__ import annotations

import numpy as np

from beliefscope.review.diagnostics import CheckpointColumn, run_findings
from beliefscope.review.priority import FlagSummary, priority


def col(ckpt, step, values, scale=64.0):
    return CheckpointColumn(ckpt, step, np.asarray(values, float), None, scale)


def kinds(findings):
    return sorted((f.kind, f.checkpoint) for f in findings)


def test_collapse_no_memory_and_healthy():
    rng = np.random.default_rng(0)
    collapsed = col(1, 100, np.abs(0.01 * rng.standard_normal(1000)))  # << 0.005 * 64
    memoryless = col(2, 200, 10 + rng.random(1000))  # > 0.1 * 64 everywhere
    healthy = np.abs(rng.normal(1.0, 0.5, 1000))
    healthy[::50] = 20.0  # short spikes only
    findings = run_findings([collapsed, memoryless, col(3, 300, healthy)])
    assert kinds(findings) == [("collapse", 1), ("no_memory", 2)]
    no_memory = next(f for f in findings if f.kind == "no_memory")
    assert no_memory.evidence["longest"] == 1000 and no_memory.examples[0] == (0, 0, 999)


def test_rising_trend_ignores_collapsed_checkpoints_and_needs_a_steady_rise():
    rng = np.random.default_rng(1)

    def level(ckpt, step, m):
        return col(ckpt, step, m * (1 + 0.05 * rng.random(400)))

    early = col(1, 10, np.zeros(400))  # collapsed: the climb out of it is not a trend
    rising = [early, level(2, 20, 1.0), level(3, 30, 1.2), level(4, 40, 1.5), level(5, 50, 2.0)]
    findings = run_findings(rising)
    trend = [f for f in findings if f.kind == "rising_trend"]
    assert [f.checkpoint for f in trend] == [5]
    assert trend[0].evidence["checkpoints"] == [2, 3, 4, 5]
    wobbly = [early, level(2, 20, 1.0), level(3, 30, 1.5), level(4, 40, 1.4), level(5, 50, 2.0)]
    assert not [f for f in run_findings(wobbly) if f.kind == "rising_trend"]


def test_priority_ranks_tall_spikes_and_ignores_dismissed():
    spike = priority([FlagSummary(10, 12, 30.0, "high")])
    plateau = priority([FlagSummary(0, 40, 2.0, "low")])
    dismissed = priority([FlagSummary(10, 12, 30.0, "high", "dismissed")])
    assert spike.score > plateau.score > dismissed.score == 0.0
    assert (spike.count, spike.peak, spike.duration) == (1, 30.0, 3)
    assert dismissed.count == 0
