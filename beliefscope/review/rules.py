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
    make_rule(
        {
            "name": "reward-surprise",
            "metric": "reward_error",
            "mode": "mad",
            "threshold": 4.0,
            "min_duration": 2,
            "merge_gap": 3,
            "severity": "high",
        }
    ),
    make_rule(
        {
            "name": "belief-jump",
            "metric": "belief_jump",
            "variant": "decode",
            "mode": "mad",
            "threshold": 6.0,
            "min_duration": 1,
            "merge_gap": 0,
            "severity": "medium",
        }
    ),
)
"""Shipped rules. `kl-spike` and `correction-spike` mark where a frame corrected the belief
strongly (KL's free-bits level is 1 nat, so its floor sits well above it; the L1 correction of a
collapsed posterior is near 0): on the demo they fire at every reappearance, slip or not.
`reward-surprise` and `belief-jump` are the slip rules, chosen by `bench/rules.py` on the demo
checkpoint's training episodes only (the union closest to recall 0.9 / precision 0.6 / plain
reappearances flagged 0.3): the reward changes while the box is hidden and kicked, and the
dynamics, not seeing it, keep predicting the old one; the belief jump is the decode probe's
distance between the prior's and the posterior's box position (decode traces only). Their
held-out figures are in docs/memory.md and the README."""
