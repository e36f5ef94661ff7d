"""The long soak: `beliefscope watch` and `beliefscope serve` on one store for many minutes while
a new checkpoint arrives every few seconds and 16 readers and 2 reviewers use the API.

    python bench/soak.py --minutes 20 --backend sqlite
    python bench/soak.py --minutes 20 --backend postgresql [--pg URL]

The same driver as the fault suite's 3-minute soak (`tests/faults/soak.py`), on the same small
MuJoCo world and tiny trained model, for longer. Prints requests served, failed requests, read
latency, the server's RSS (after warm-up, at the end, its peak, once a minute), checkpoints
ingested with their lag, the integrity counts and the load average, then the report as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from beliefscope.config import get_settings  # noqa: E402
from beliefscope.store.engine import upgrade  # noqa: E402
from tests import pgserver  # noqa: E402
from tests.builders import make_world  # noqa: E402
from tests.conftest import DEFAULT_TEST_PG  # noqa: E402
from tests.faults.soak import Load, checkpoints_needed, soak, stage  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="steady phase")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg", default=get_settings().test_pg or DEFAULT_TEST_PG, help="server")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between checkpoints")
    parser.add_argument("--readers", type=int, default=16)
    parser.add_argument("--reviewers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    steady_s = 60 * args.minutes
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        if args.backend == "sqlite":
            url = f"sqlite:///{root / 'store.db'}"
        else:
            url = stack.enter_context(pgserver.fresh_database(args.pg))
        upgrade(url)
        world = make_world(root / "replay", episodes=4, length=40)
        staged = stage(root / "staged", world, checkpoints_needed(steady_s, args.every))
        load = Load(readers=args.readers, reviewers=args.reviewers)
        report = soak(
            url, world, staged, root / "soak", steady_s=steady_s, every_s=args.every, load=load
        )
    print(report.summary())
    per_minute = report.rss_samples_mb[::60]
    print("server RSS once a minute (MB): " + " ".join(f"{x:.0f}" for x in per_minute))
    print(
        f"integrity: {report.duplicate_traces} duplicate traces, {report.duplicate_checkpoints} "
        f"duplicate checkpoints, {report.partial_traces} partial, {report.ingest_errors} ingest "
        f"errors, {report.lost_notes} lost notes, watch exit {report.watch_exit}"
    )
    for error in report.errors[:20]:
        print("error:", error)
    fields = dataclasses.asdict(report)
    fields.pop("rss_samples_mb")
    if report.watch_exit == 0:
        fields.pop("watch_log")
    fields["rss_per_minute_mb"] = [round(x, 1) for x in per_minute]
    fields["rss_growth"] = report.rss_growth
    print(json.dumps(fields))


if __name__ == "__main__":
    main()
