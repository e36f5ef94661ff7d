"""Re-flagging speed: a rule change over 1M stored steps on SQLite (target: under 2 s).

    python bench/reflag.py [--steps 1000000] [--traces 1000] [--repeat 3]

Builds a SQLite store of synthetic traces through the real writer (KL with spikes, several
checkpoints), then times `ReviewService.apply_rule`: first cold (the rule reads the step rows
and caches its metric columns), then for edited versions of the rule, each against a plain
`SELECT kl FROM steps` scan in the same round (so the ratio holds on a shared, noisy machine).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from beliefscope.review.service import ReviewService
from beliefscope.store.engine import open_store, upgrade
from beliefscope.values.traces import METRICS, TraceData

TARGET_S = 2.0


def build(url: str, steps: int, traces: int, checkpoints: int, seed: int) -> None:
    store = open_store(url)
    w = store.writer
    run = w.ensure_run("bench", logdir="/bench")
    rng = np.random.default_rng(seed)
    length = steps // traces
    ckpts = [
        w.ensure_checkpoint(run, content_hash=f"c{i}", format="native", source_path="/c", step=i)
        for i in range(checkpoints)
    ]
    episodes = [
        w.ensure_episode(run, key=f"ep{i}", format="beliefscope", source_path="/e", length=length)
        for i in range(traces // checkpoints)
    ]
    for i in range(traces):
        kl = rng.gamma(4.0, 0.4, length)
        for t in rng.integers(0, length - 4, size=length // 100):
            kl[t : t + rng.integers(1, 5)] += rng.uniform(3, 15)
        metrics = {name: rng.random(length) for name in METRICS}
        metrics["kl"] = kl
        data = TraceData(metrics=metrics, kl_groups=kl[:, None])
        w.write_trace(ckpts[i % checkpoints], episodes[i // checkpoints], "filter", "mode", data)
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--traces", type=int, default=1000)
    parser.add_argument("--checkpoints", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        started = time.perf_counter()
        build(url, args.steps, args.traces, args.checkpoints, seed=0)
        built = time.perf_counter() - started
        print(f"built {args.steps:,} steps in {args.traces} traces: {built:.1f} s")
        store = open_store(url)
        reviews = ReviewService(store)
        reviews.ensure_default_rules()
        r = reviews.apply_rule(name="kl-spike", who="bench")
        cold = r.read_s + r.compute_s + r.write_s
        print(f"cold apply (reads steps, caches columns): {cold:.2f} s, {r.created} flags")
        variants = [{"threshold": 6}, {"min_duration": 3, "merge_gap": 2}, {"normalise": "none"}]
        for i in range(args.repeat):
            for change in variants:
                t = time.perf_counter()
                with store.connect() as conn:
                    scan = conn.execute(sa.text("SELECT kl FROM steps")).scalars().all()
                scan_s = time.perf_counter() - t
                assert len(scan) == args.steps // args.traces * args.traces
                t = time.perf_counter()
                reviews.set_rule(name="kl-spike", changes=change, who="bench")
                r = reviews.apply_rule(name="kl-spike", who="bench")
                total = time.perf_counter() - t
                print(
                    f"round {i} v{r.version} {str(change):40} {total:5.2f} s "
                    f"({total / TARGET_S:4.2f} x the 2 s target, {total / scan_s:4.2f} x a bare "
                    f"steps scan) read {r.read_s:.2f} compute {r.compute_s:.2f} "
                    f"write {r.write_s:.2f}; +{r.created} ={r.updated} -{r.deleted}"
                )
        store.close()


if __name__ == "__main__":
    main()
