"""Choose review rules by a sweep on a checkpoint's training episodes, report them on held-out
ones: how the shipped default rules were picked (see `beliefscope.review.rules`).

    python bench/rules.py CKPT --train TRAIN_DIR --held HELD_DIR [--held HELD_DIR2 ...]

Every rule setting of the grid (metric, MAD multiplier, floor, per-episode normalisation,
minimum duration, merge gap) is applied to the training episodes' traces, alone and as the
union with the best settings of the other metrics; the goal is the product's promise (slip
recall >= 0.9, slip precision >= 0.6, plain reappearances flagged <= 0.3; short of it, the
smallest summed shortfall from the three), and the
winner is scored on each held-out set with 95% bootstrap intervals. One torch thread.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from beliefscope.replay.base import Episode  # noqa: E402
from beliefscope.review.scoring import EpisodeTruth, score  # noqa: E402
from beliefscope.review.segments import apply_rule  # noqa: E402
from beliefscope.rssm import formats  # noqa: E402
from beliefscope.values.review import Rule, Score, make_rule  # noqa: E402
from bench.memory import load, signals  # noqa: E402
from ingest import probes  # noqa: E402

METRICS = {
    "kl": "filter",
    "correction": "filter",
    "reward_error": "filter",
    "belief_jump": "decode",
}
KS = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
FLOOR_QUANTILES = (None, 0.5, 0.8, 0.9, 0.95, 0.98)
"""Floors as quantiles of the metric over the training steps (metric scales differ)."""


@dataclass(frozen=True)
class Traces:
    episodes: list[Episode]
    series: list[dict[str, np.ndarray]]

    def flags(self, rule: Rule) -> list[list[tuple[int, int]]]:
        values = [s[rule.metric] for s in self.series]
        offsets = np.r_[0, np.cumsum([len(v) for v in values])]
        found = apply_rule(rule, np.concatenate(values), offsets)
        out: list[list[tuple[int, int]]] = [[] for _ in values]
        for i, t0, t1 in zip(found.trace, found.t0, found.t1, strict=True):
            out[int(i)].append((int(t0), int(t1)))
        return out

    def score(self, rules: list[Rule], resamples: int = 0) -> Score:
        per_rule = [self.flags(r) for r in rules]
        truths = [
            EpisodeTruth(
                np.asarray(ep.truth["occluded"], bool),
                np.asarray(ep.truth["slip"], bool),
                self.series[i][rules[0].metric],
                [f for flags in per_rule for f in flags[i]],
            )
            for i, ep in enumerate(self.episodes)
        ]
        return score(truths, resamples=resamples)


def grid(traces: Traces, metric: str) -> list[Rule]:
    values = np.concatenate([s[metric] for s in traces.series])
    values = values[np.isfinite(values)]
    rules = []
    for k, q, norm, duration, gap in itertools.product(
        KS, FLOOR_QUANTILES, ("none", "episode"), (1, 2), (0, 3)
    ):
        floor = None if q is None else float(np.quantile(values, q))
        rules.append(
            make_rule(
                {
                    "name": f"{metric}-sweep",
                    "metric": metric,
                    "mode": "mad",
                    "threshold": k,
                    "floor": floor,
                    "normalise": norm,
                    "min_duration": duration,
                    "merge_gap": gap,
                    "variant": METRICS[metric],
                }
            )
        )
    return rules


def goal(s: Score) -> tuple[float, ...]:
    """Meets the targets first, then precision; otherwise the closest to all three of them
    (a rule that flags everything has the recall and nothing else)."""
    precision = float(np.nan_to_num(s.slip_precision))
    feasible = s.slip_recall >= 0.9 and precision >= 0.6 and s.plain_flagged <= 0.3
    shortfall = (
        max(0.0, 0.9 - s.slip_recall) + max(0.0, 0.6 - precision) + max(0.0, s.plain_flagged - 0.3)
    )
    return (float(feasible), -shortfall, precision)


def describe(s: Score) -> str:
    def f(name: str) -> str:
        value = getattr(s, name)
        lo, hi = s.intervals.get(name, (np.nan, np.nan))
        return f"{value:.2f}" + ("" if np.isnan(lo) else f" ({lo:.2f}-{hi:.2f})")

    return (
        f"slip recall {f('slip_recall')}, slip precision {f('slip_precision')}, plain flagged "
        f"{f('plain_flagged')} [{s.slip_events} slip / {s.plain_events} plain, {s.flags} flags]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--held", type=Path, action="append", required=True)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--top", type=int, default=4, help="settings per metric kept for unions")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f}")
    model = formats.load(
        next(r for r in formats.discover(args.checkpoint.parent) if r.path == args.checkpoint)
    )
    train_eps = load(args.train)
    probe = probes.fit_decoder(model, train_eps)
    train = Traces(train_eps, signals(model, train_eps, probe))
    best: dict[str, list[tuple[tuple[float, ...], Rule, Score]]] = {}
    for metric in METRICS:
        ranked = sorted(
            ((goal(s), r, s) for r in grid(train, metric) for s in [train.score([r])]),
            key=lambda x: x[0],
            reverse=True,
        )
        best[metric] = ranked[: args.top]
        print(f"best {metric} rule on training episodes: {ranked[0][1].describe()}")
        print(f"  {describe(ranked[0][2])}")
    candidates = [[r] for m in best for _, r, _ in best[m]]
    for a, b in itertools.combinations(METRICS, 2):
        candidates += [[ra, rb] for _, ra, _ in best[a] for _, rb, _ in best[b]]
    chosen = max(candidates, key=lambda rules: goal(train.score(rules)))
    print("chosen (union):")
    for rule in chosen:
        print(f"  {rule.describe()} on {rule.variant} traces")
    print(f"  training episodes: {describe(train.score(chosen, args.resamples))}")
    for held_dir in args.held:
        held_eps = load(held_dir)
        held = Traces(held_eps, signals(model, held_eps, probe))
        print(f"  held out {held_dir.name}: {describe(held.score(chosen, args.resamples))}")
        for rule in chosen:
            print(f"    {rule.metric} alone: {describe(held.score([rule], args.resamples))}")


if __name__ == "__main__":
    main()
