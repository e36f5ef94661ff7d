"""The shipped flag rules (what a rule is: `beliefscope.values.review.Rule`)."""

from __future__ import annotations

from beliefscope.values.review import Rule, make_rule

DEFAULT_RULES: tuple[Rule, ...] = (
    make_rule(
        {
            "name": "kl-spike",
            "metric": "kl",
            "mode": "mad",
            "threshold": 3.0,
            "floor": 4.0,
            "normalise": "episode",
            "min_duration": 2,
            "merge_gap": 3,
            "severity": "high",
        }
    ),
    make_rule(
        {
            "name": "correction-spike",
            "metric": "correction",
            "mode": "mad",
            "threshold": 2.0,
            "floor": 8.0,
            "normalise": "episode",
            "min_duration": 2,
            "merge_gap": 3,
            "severity": "medium",
        }
    ),
)
"""Shipped rules. KL's free-bits level is 1 nat, so its floor sits well above it; the L1
correction of a collapsed posterior is near 0. Chosen by a sweep (mode, k, floor,
normalisation, duration, gap; flags of at most 8 steps on average) over the demo model's
1500-update checkpoint on 64 occlusion-world episodes: kl-spike found 57% of slip
reappearances at 48% precision, correction-spike 59% at 44% (the best balanced settings;
that model is as surprised by a plain reappearance as by a slip, slip-vs-plain AUC 0.56)."""
