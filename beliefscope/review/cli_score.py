"""`beliefscope score`: precision and recall of the review flags against ground truth, per
checkpoint; the scores are stored so the UI can show them."""

from __future__ import annotations

import argparse
import math

from beliefscope.review.evaluate import rescore
from beliefscope.review.service import ReviewService
from beliefscope.review.truth import TruthCache
from beliefscope.store.engine import open_store
from beliefscope.values.review import Score


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", default=None, help="only this run (by name; default: every run)")
    parser.add_argument(
        "--rule", action="append", default=None, help="score only these rules' flags"
    )
    parser.add_argument("--metric", default="kl", help="signal for the slip-vs-plain AUC")
    parser.add_argument(
        "--apply", action="store_true", help="recompute flags of the rules before scoring"
    )
    parser.add_argument(
        "--resamples",
        type=int,
        default=1000,
        help="bootstrap resamples of episodes for the 95%% intervals (0: none)",
    )


def _fmt(value: float) -> str:
    return " n/a" if math.isnan(value) else f"{value:4.2f}"


def _with_interval(s: Score, name: str) -> str:
    lo, hi = s.intervals.get(name, (math.nan, math.nan))
    if math.isnan(lo):
        return f"{_fmt(getattr(s, name))}           "
    return f"{_fmt(getattr(s, name))} ({lo:4.2f}-{hi:4.2f})"


HEADER = (
    "     step split     slip recall      slip precision   plain flagged    AUC"
    "               AP   slip plain flags  eps"
)


def format_row(step: int | None, s: Score, split: str = "all") -> str:
    figures = " ".join(
        _with_interval(s, name) for name in ("slip_recall", "slip_precision", "plain_flagged")
    )
    return (
        f"{'?' if step is None else step:>9} {split:<9} {figures} {_with_interval(s, 'slip_auc')}"
        f" {_fmt(s.episode_ap)} {s.slip_events:>5} {s.plain_events:>5} {s.flags:>5} "
        f"{s.episodes:>4}"
    )


def run(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    try:
        runs = (
            [store.queries.find_run(name=args.run)]
            if args.run
            else list(store.queries.list_runs(limit=10_000).items)
        )
        if args.apply:
            reviews = ReviewService(store)
            reviews.ensure_default_rules()
            for run_info in runs:
                reviews.apply_rules(who="score", run_id=run_info.id)
        truth = TruthCache(store)
        for run_info in runs:
            print(f"run {run_info.name}")
            print(HEADER)
            checkpoints = store.queries.list_checkpoints(run_id=run_info.id, limit=10_000).items
            for ckpt in checkpoints:
                for info in rescore(
                    store,
                    checkpoint_id=ckpt.id,
                    truth=truth,
                    rule_names=args.rule,
                    metric=args.metric,
                    resamples=args.resamples,
                ):
                    print(format_row(ckpt.step, info.score, info.split))
        print(
            "slip recall: slip reappearances with a flag; slip precision: flags at a slip "
            "reappearance; plain flagged: plain reappearances with a flag; AUC: the --metric's "
            "peak after a slip vs after a plain reappearance; AP: episode ranking; held-out: "
            "episodes the checkpoint never trained on (95% bootstrap intervals over episodes)"
        )
    finally:
        store.close()
    return 0
