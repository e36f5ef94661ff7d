"""`beliefscope watch LOGDIR`: ingest each new checkpoint version and episode as it appears.

Each cycle is an ordinary idempotent ingest of the log dir: stored units are skipped, a
checkpoint overwritten in place (`latest.pt`) is a new content hash and so a new checkpoint,
and new episodes become new units for every checkpoint. A cycle that finds nothing new costs
a directory listing, one hash per changed checkpoint file and one query per checkpoint. A
store that is unavailable for a while (a database restart, a full disk) is reported and
retried at the next scan: a watcher left running outlasts both.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path
from types import FrameType

from beliefscope.access import terminal_user
from beliefscope.errors import StoreUnavailableError
from beliefscope.store.engine import Store, open_store
from ingest.cli import add_request_arguments, request_from
from ingest.planner import SnapshotCache
from ingest.progress import Progress
from ingest.request import IngestRequest
from ingest.service import Ingestor


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logdir", type=Path, metavar="LOGDIR", help="training log dir to follow")
    add_request_arguments(parser)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between scans")
    parser.add_argument(
        "--cycles", type=int, default=0, help="stop after this many scans (0: run until stopped)"
    )


def watch(
    request: IngestRequest,
    store_url: str | None,
    *,
    interval: float,
    cycles: int = 0,
    stop: threading.Event | None = None,
    log: bool = True,
) -> int:
    """Scan and ingest until `stop` is set (or `cycles` scans ran); returns traces written."""
    stop = stop or threading.Event()
    store = open_store(store_url, create=True)
    cache: SnapshotCache = {}
    written, cycle = 0, 0
    while not stop.is_set():
        cycle += 1
        try:
            written += _scan(store, request, cache, log)
        except StoreUnavailableError as err:  # a restart, a full disk: the next scan retries
            print(f"watch {request.name}: {err}; trying again in {interval:g} s", flush=True)
        if cycles and cycle >= cycles:
            break
        stop.wait(interval)
    return written


def _scan(store: Store, request: IngestRequest, cache: SnapshotCache, log: bool) -> int:
    """One scan: ingest whatever is new; returns traces written."""
    ingestor = Ingestor(store, request, cache)
    if not ingestor.pending():
        return 0
    job = ingestor.submit(started_by=f"watch:{terminal_user()}")
    with Progress(f"watch {request.name}") as progress:
        report = ingestor.run(job.id, progress)
    if log:
        print(
            f"watch {request.name}: +{report.written} traces, {len(report.errors)} errors",
            flush=True,
        )
    return report.written


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def handle(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    request = request_from(args, args.logdir)
    started = time.monotonic()
    written = watch(request, args.store, interval=args.interval, cycles=args.cycles, stop=stop)
    print(
        f"watch {request.name}: stopped after {time.monotonic() - started:.0f} s, "
        f"{written} traces written"
    )
    return 0
