"""`beliefscope score`: precision and recall of the review flags against ground truth, per
checkpoint; the scores are stored so the UI can show them."""

from __future__ import annotations

import argparse
import math

from beliefscope.review.evaluate import TruthCache, score_checkpoint
from beliefscope.review.scoring import Score
from beliefscope.store import review_store as rs
from beliefscope.store.engine import open_store


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default=None, metavar="URL", help="SQLAlchemy URL of the store")
    parser.add_argument("--run", default=None, help="only this run (by name; default: every run)")
    parser.add_argument(
        "--rule", action="append", default=None, help="score only these rules' flags"
    )
    parser.add_argument("--metric", default="kl", help="signal for the slip-vs-plain AUC")
    parser.add_argument(
        "--apply", action="store_true", help="recompute flags of the rules before scoring"
    )


def _fmt(value: float) -> str:
    return "  n/a" if math.isnan(value) else f"{value:5.2f}"


def format_row(step: int | None, s: Score) -> str:
    return (
        f"{'?' if step is None else step:>9} {_fmt(s.slip_recall)} {_fmt(s.precision)} "
        f"{_fmt(s.reappearance_recall)} {_fmt(s.slip_auc)} {_fmt(s.episode_ap)} "
        f"{s.slip_events:>5} {s.plain_events:>5} {s.flags:>6} {s.episodes:>5}"
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
            rs.ensure_default_rules(store)
            for run_info in runs:
                rs.apply_rules(store, who="score", run_id=run_info.id)
        truth = TruthCache(store)
        for run_info in runs:
            print(f"run {run_info.name}")
            print("     step slipR  prec allR   AUC    AP  slip plain  flags   eps")
            checkpoints = store.queries.list_checkpoints(run_id=run_info.id, limit=10_000).items
            for ckpt in checkpoints:
                score, rules = score_checkpoint(
                    store,
                    checkpoint_id=ckpt.id,
                    truth=truth,
                    rule_names=args.rule,
                    metric=args.metric,
                )
                rs.save_score(store, checkpoint_id=ckpt.id, score=score, rules=rules)
                print(format_row(ckpt.step, score))
        print(
            "slipR: slip reappearances found; prec: flags near a reappearance; allR: every "
            "reappearance found; AUC: signal after slip vs plain; AP: episode ranking"
        )
    finally:
        store.close()
    return 0
