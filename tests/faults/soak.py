"""The soak driver shared by `tests/faults/test_soak.py` and `bench/soak.py`: `beliefscope watch`
follows a log dir that receives a new checkpoint every few seconds while readers and reviewers
use `beliefscope serve`, both real processes on loopback over one real store.

New checkpoints are trained beforehand (`stage`, the product's `train`) and then moved into the
log dir one at a time, each by an atomic rename as the trainer itself writes them: to `watch`
that is a checkpoint arriving, at a fraction of the CPU that training it on the spot would
take from the server on a 2-core machine.

`soak` measures and never asserts, so the benchmark reports a failing run too; the test asserts
on its `SoakReport`.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import sqlalchemy as sa

from beliefscope.replay.base import detect_format
from beliefscope.store.engine import Store, open_store
from beliefscope.store.tables import Checkpoint, JobError, Trace
from beliefscope.values.access import Scope
from tests.builders import make_run
from tests.faults.integrity import census
from tests.faults.services import served

API = "/api/v1"
_INGESTED = (
    sa.select(Checkpoint.source_path, sa.func.count(Trace.id), sa.func.max(Trace.created))
    .outerjoin(Trace, Trace.checkpoint_id == Checkpoint.id)
    .group_by(Checkpoint.id, Checkpoint.source_path)
)


@dataclass(frozen=True)
class Load:
    """Who uses the server during the soak, and how hard."""

    readers: int = 16
    reviewers: int = 2
    reader_pause_s: tuple[float, float] = (0.5, 1.5)
    """Between two visits of one reader (a visit is ~7 requests, as a dashboard page makes)."""
    reviewer_pause_s: tuple[float, float] = (1.0, 3.0)
    frame_share: float = 0.15
    """Visits that also render a frame (model and image work in the server)."""
    frame_steps: tuple[int, ...] = (0, 10, 20, 30)
    """Frames are rendered at these steps under the two oldest checkpoints, so the frame
    service's caches (fixed byte bounds, up to ~2.6 GB) fill during warm-up and RSS growth
    after it is not a cache filling up; every other read follows the new checkpoints."""


@dataclass
class SoakReport:
    steady_s: float
    readers: int
    reviewers: int
    requests: int = 0
    reviews: int = 0
    """Review writes: state changes, notes and manual flags."""
    errors: list[str] = field(default_factory=list)
    """Every failed request (non-2xx or no answer): `METHOD PATH: CODE detail`."""
    p50_ms: float = math.nan
    p95_ms: float = math.nan
    rss_start_mb: float = math.nan
    """The server's RSS after warm-up."""
    rss_end_mb: float = math.nan
    rss_max_mb: float = math.nan
    rss_samples_mb: list[float] = field(default_factory=list)
    """The server's RSS every second, from the clients' start to their end."""
    checkpoints_written: int = 0
    checkpoints_ingested: int = 0
    """Checkpoints stored with all their traces."""
    traces: int = 0
    traces_expected: int = 0
    duplicate_traces: int = 0
    duplicate_checkpoints: int = 0
    partial_traces: int = 0
    lag_p50_s: float = math.nan
    """From a checkpoint's arrival to its last trace stored (those arriving under load)."""
    lag_max_s: float = math.nan
    ingest_errors: int = 0
    """Job errors recorded in the store."""
    lost_notes: int = 0
    """Notes answered 200 that are not in their flag."""
    watch_exit: int | None = None
    watch_log: str = ""
    load_avg: tuple[float, float, float] = (math.nan, math.nan, math.nan)
    """At the end of the steady phase (1, 5, 15 min)."""

    @property
    def rss_growth(self) -> float:
        return self.rss_end_mb / self.rss_start_mb - 1.0

    def summary(self) -> str:
        return (
            f"soak {self.steady_s:.0f} s, {self.readers} readers + {self.reviewers} reviewers: "
            f"{self.requests} requests ({self.reviews} review writes), {len(self.errors)} errors, "
            f"read p50 {self.p50_ms:.0f} ms p95 {self.p95_ms:.0f} ms; server RSS "
            f"{self.rss_start_mb:.0f} -> {self.rss_end_mb:.0f} MB ({self.rss_growth:+.1%}, max "
            f"{self.rss_max_mb:.0f}); checkpoints {self.checkpoints_ingested}/"
            f"{self.checkpoints_written} ingested, traces {self.traces}/{self.traces_expected}, "
            f"lag p50 {self.lag_p50_s:.1f} s max {self.lag_max_s:.1f} s; load average "
            + " ".join(f"{x:.2f}" for x in self.load_avg)
        )


def stage(out: Path, replay: Path, count: int) -> list[Path]:
    """`count` checkpoints of one briefly trained tiny model, in step order."""
    return make_run(out, replay, steps=count, save_every=1)


def checkpoints_needed(steady_s: float, every_s: float, initial: int = 2) -> int:
    return initial + math.ceil(steady_s / every_s) + 1


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _arrive(checkpoint: Path, logdir: Path) -> float:
    """Put `checkpoint` into `logdir` as the trainer does (a temp name, then a rename)."""
    temp = logdir / f".{checkpoint.name}.part"
    shutil.copyfile(checkpoint, temp)
    os.replace(temp, logdir / checkpoint.name)
    return time.time()


@contextmanager
def _watching(
    store_url: str, logdir: Path, replay: Path, home: Path, interval_s: float
) -> Iterator[subprocess.Popen[bytes]]:
    """`beliefscope watch` in its own process, output to a file; stopped with SIGTERM."""
    env = {**os.environ, "BELIEFSCOPE_HOME": str(home), "BELIEFSCOPE_STORE": store_url}
    cmd = [
        sys.executable,
        "-m",
        "beliefscope.cli",
        "watch",
        str(logdir),
        "--replay",
        str(replay),
        "--interval",
        str(interval_s),
    ]
    log = home / "watch.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class _Tally:
    """Requests made by all clients: read latencies, review writes, failures."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.requests = 0
        self.reviews = 0
        self.errors: list[str] = []
        self.notes: list[tuple[int, str]] = []

    def call(
        self, client: httpx.Client, method: str, path: str, *, read: bool = True, **kw: object
    ) -> httpx.Response | None:
        began = time.perf_counter()
        try:
            answer = client.request(method, path, **kw)  # type: ignore[arg-type]
        except httpx.HTTPError as err:
            with self.lock:
                self.requests += 1
                self.errors.append(f"{method} {path}: {type(err).__name__} {err}")
            return None
        took = time.perf_counter() - began
        with self.lock:
            self.requests += 1
            if not answer.is_success:
                self.errors.append(f"{method} {path}: {answer.status_code} {answer.text[:200]}")
                return None
            if read:
                self.latencies.append(took)
            else:
                self.reviews += 1
        return answer


def _data(answer: httpx.Response | None) -> list[dict]:
    return [] if answer is None else list(answer.json()["data"])


def _reader(
    base: str, token: str, seed: int, load: Load, tally: _Tally, stop: threading.Event
) -> None:
    """Visits as the dashboard makes them: run, checkpoints, episodes, a trace's series, then
    one of the summaries, flags, scores or a rendered frame; newer checkpoints more often."""
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
        while not stop.is_set():
            runs = _data(tally.call(client, "GET", f"{API}/runs"))
            if runs:
                run = rng.choice(runs)["id"]
                tally.call(client, "GET", f"{API}/runs/{run}")
                checkpoints = _data(tally.call(client, "GET", f"{API}/runs/{run}/checkpoints"))
                episodes = _data(tally.call(client, "GET", f"{API}/runs/{run}/episodes"))
                if checkpoints and episodes:
                    by_step = sorted(checkpoints, key=lambda c: c["step"] or 0)
                    checkpoint = by_step[-1 - min(int(rng.expovariate(0.3)), len(by_step) - 1)]
                    episode = rng.choice(episodes)
                    traces = _data(
                        tally.call(
                            client,
                            "GET",
                            f"{API}/episodes/{episode['id']}/traces",
                            params={"checkpoint_id": checkpoint["id"]},
                        )
                    )
                    if traces:
                        trace = rng.choice(traces)["id"]
                        tally.call(client, "GET", f"{API}/traces/{trace}/series")
                    extra = rng.random()
                    if extra < load.frame_share:
                        t = rng.choice([t for t in load.frame_steps if t < episode["length"]])
                        pinned = rng.choice(by_step[:2])["id"]
                        tally.call(
                            client,
                            "GET",
                            f"{API}/episodes/{episode['id']}/frames/{t}",
                            params={"panels": "recon,error", "checkpoint": pinned},
                        )
                    elif extra < 0.4:
                        tally.call(client, "GET", f"{API}/checkpoints/{checkpoint['id']}/summary")
                    elif extra < 0.6:
                        tally.call(client, "GET", f"{API}/runs/{run}/summaries")
                    elif extra < 0.8:
                        tally.call(client, "GET", f"{API}/scores", params={"run_id": run})
                    else:
                        flags = _data(
                            tally.call(
                                client, "GET", f"{API}/flags", params={"run_id": run, "limit": 50}
                            )
                        )
                        if flags:
                            flag = rng.choice(flags)["id"]
                            tally.call(client, "GET", f"{API}/flags/{flag}/history")
            stop.wait(rng.uniform(*load.reader_pause_s))


def _reviewer(
    base: str, token: str, seed: int, load: Load, tally: _Tally, stop: threading.Event
) -> None:
    """Reviews open flags (state, category, tags, a note) and now and then flags a stretch of a
    trace by hand; every note is remembered so the end can check none was lost."""
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}"}
    n = 0
    with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
        while not stop.is_set():
            n += 1
            flags = _data(
                tally.call(client, "GET", f"{API}/flags", params={"state": "open", "limit": 20})
            )
            flag: int | None = rng.choice(flags)["id"] if flags else None
            if flag is None or n % 3 == 0:
                traces = _data(tally.call(client, "GET", f"{API}/traces", params={"limit": 50}))
                if traces:
                    trace = rng.choice(traces)
                    t0 = rng.randrange(trace["length"] - 5)
                    body = {"trace_id": trace["id"], "t0": t0, "t1": t0 + 4, "tags": ["soak"]}
                    made = tally.call(client, "POST", f"{API}/flags", read=False, json=body)
                    flag = made.json()["id"] if made is not None else flag
            if flag is not None:
                change = {
                    "state": rng.choice(["confirmed", "dismissed"]),
                    "category": rng.choice(["occlusion", "slip", "delay", "other"]),
                    "tags": [f"soak-{seed}"],
                }
                tally.call(client, "PATCH", f"{API}/flags/{flag}", read=False, json=change)
                text = f"soak note {seed}.{n}"
                if tally.call(
                    client, "POST", f"{API}/flags/{flag}/notes", read=False, json={"text": text}
                ):
                    with tally.lock:
                        tally.notes.append((flag, text))
            stop.wait(rng.uniform(*load.reviewer_pause_s))


def _ingested(store: Store) -> list[tuple[str, int, datetime | None]]:
    """Every stored checkpoint: (file name, traces, when the last of them was stored)."""
    with store.connect() as conn:
        rows = conn.execute(_INGESTED).all()
    return [(Path(path).name, int(traces), last) for path, traces, last in rows]


def _complete(store: Store, names: list[str], per_checkpoint: int) -> bool:
    found = {name: traces for name, traces, _ in _ingested(store)}
    return all(found.get(n, 0) >= per_checkpoint for n in names)


def _wait(store: Store, names: list[str], per_checkpoint: int, timeout_s: float) -> None:
    """Until `names` are stored whole, or `timeout_s`: the report then shows what is missing."""
    deadline = time.monotonic() + timeout_s
    while not _complete(store, names, per_checkpoint) and time.monotonic() < deadline:
        time.sleep(0.5)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)] if ordered else math.nan


def soak(
    store_url: str,
    replay: Path,
    staged: list[Path],
    root: Path,
    *,
    steady_s: float,
    every_s: float,
    warmup_s: float = 20.0,
    interval_s: float = 2.0,
    drain_s: float = 120.0,
    initial: int = 2,
    load: Load = Load(),
) -> SoakReport:
    """Serve and watch `store_url` (an upgraded store) from `root`'s log dir: `initial` staged
    checkpoints first, then, after `warmup_s` of load, one every `every_s` for `steady_s`, then
    up to `drain_s` for the watcher to catch up while the load goes on."""
    logdir, home = root / "logdir", root / "home"
    logdir.mkdir(parents=True)
    home.mkdir(parents=True)
    per_checkpoint = len(detect_format(replay).list(replay))  # the `filter` trace per episode
    report = SoakReport(steady_s, load.readers, load.reviewers)
    store = open_store(store_url)
    kinds: list[tuple[Scope, int]] = [("read", load.readers), ("review", load.reviewers)]
    tokens = [
        store.access.create_token(f"{scope}-{i}", scope=scope, who="soak")[1]
        for scope, count in kinds
        for i in range(count)
    ]
    arrived = {path.name: _arrive(path, logdir) for path in staged[:initial]}
    tally, stop = _Tally(), threading.Event()
    rss: list[float] = []
    try:
        with (
            served(store_url, home) as server,
            _watching(store_url, logdir, replay, home, interval_s) as watch,
        ):
            _wait(store, list(arrived), per_checkpoint, 300)
            clients = [
                threading.Thread(
                    target=_reader if i < load.readers else _reviewer,
                    args=(server.base, token, i, load, tally, stop),
                )
                for i, token in enumerate(tokens)
            ]
            for thread in clients:
                thread.start()

            def sample() -> None:
                while not stop.wait(1.0):
                    rss.append(rss_mb(server.pid))

            sampler = threading.Thread(target=sample)
            sampler.start()
            time.sleep(warmup_s)
            report.rss_start_mb = rss_mb(server.pid)
            began = time.monotonic()
            for k, path in enumerate(staged[initial:], start=1):
                if time.monotonic() - began >= steady_s or watch.poll() is not None:
                    break
                arrived[path.name] = _arrive(path, logdir)
                next_at = min(began + k * every_s, began + steady_s)
                time.sleep(max(0.0, next_at - time.monotonic()))
            report.steady_s = time.monotonic() - began
            report.load_avg = os.getloadavg()
            _wait(store, list(arrived), per_checkpoint, drain_s)
            report.rss_end_mb = rss_mb(server.pid)
            stop.set()
            for thread in [*clients, sampler]:
                thread.join()
        report.watch_exit = watch.returncode
        report.watch_log = (home / "watch.log").read_text(errors="replace")[-3000:]
        _account(report, store, tally, arrived, initial, per_checkpoint, rss, store_url)
    finally:
        stop.set()
        store.close()
    return report


def _account(
    report: SoakReport,
    store: Store,
    tally: _Tally,
    arrived: dict[str, float],
    initial: int,
    per_checkpoint: int,
    rss: list[float],
    store_url: str,
) -> None:
    """Fill the report from the clients' tally and the store's own rows."""
    report.requests, report.reviews, report.errors = tally.requests, tally.reviews, tally.errors
    report.p50_ms = 1000 * _percentile(tally.latencies, 0.5)
    report.p95_ms = 1000 * _percentile(tally.latencies, 0.95)
    report.rss_max_mb = max(rss, default=math.nan)
    report.rss_samples_mb = rss
    rows = _ingested(store)
    report.checkpoints_written = len(arrived)
    report.duplicate_checkpoints = len(rows) - len({name for name, _, _ in rows})
    whole = {name: last for name, traces, last in rows if traces == per_checkpoint}
    report.checkpoints_ingested = len(whole.keys() & arrived.keys())
    under_load = list(arrived)[initial:]
    lags = [last.timestamp() - arrived[n] for n in under_load if (last := whole.get(n))]
    report.lag_p50_s, report.lag_max_s = _percentile(lags, 0.5), max(lags, default=math.nan)
    counted = census(store_url)
    report.traces, report.traces_expected = len(counted.keys), len(arrived) * per_checkpoint
    report.duplicate_traces, report.partial_traces = counted.duplicates, len(counted.partial)
    with store.connect() as conn:
        errors = conn.execute(sa.select(sa.func.count()).select_from(JobError)).scalar_one()
    report.ingest_errors = int(errors)
    notes = {flag: store.reviews.get_flag(flag_id=flag).notes for flag, _ in tally.notes}
    report.lost_notes = sum(
        not any(line.endswith(f": {text}") for line in notes[flag].splitlines())
        for flag, text in tally.notes
    )
