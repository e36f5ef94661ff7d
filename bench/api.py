"""API benchmark: trace reads and frame renders on a store with 1M step rows, then a mixed
load of concurrent clients (reads + flag writes) while an ingest writes to the same store.

    python bench/api.py                # full: 1M step rows, 32 clients for 20 s
    python bench/api.py --quick        # a smoke run: 100k rows, 8 clients for 5 s

The store is built by the product's own code: MuJoCo world episodes (`world.generate`), a
briefly trained native model (`rssm.train`), the ingest service, then synthetic traces written
through the same bulk writer to reach the row count. The server is `beliefscope serve` in its
own process, measured over real HTTP. Each latency is also given as a ratio to a baseline
measured in the same run (the machine is shared and noisy): API trace read vs the read layer
called in-process, overlay frame vs a plain observation frame.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

# bench/ holds scripts named like the product's packages (bench/ingest.py): keep the script's
# own folder off the import path so `ingest` is the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from beliefscope.replay.base import detect_format  # noqa: E402
from beliefscope.rssm.presets import Preset  # noqa: E402
from beliefscope.rssm.train import Stream, train  # noqa: E402
from beliefscope.store.engine import open_store, upgrade  # noqa: E402
from beliefscope.values.traces import METRICS, TraceData  # noqa: E402
from beliefscope.world.generate import Generator, WorldConfig  # noqa: E402

MICRO = Preset(name="micro", depth=4, deter=32, hidden=32, groups=4, classes=4, units=32)
LENGTH = 1000


def build(root: Path, url: str, rows: int) -> dict[str, object]:
    """World + trained run + real ingest, then synthetic traces up to `rows` step rows."""
    from ingest.request import IngestRequest
    from ingest.service import Ingestor

    replay = root / "run" / "replay"
    gen = Generator(replay, WorldConfig(seed=0, length=LENGTH))
    try:
        for _ in gen.episodes(2):
            pass
    finally:
        gen.close()
    fmt = detect_format(replay)
    stream = Stream.join([fmt.load(ref) for ref in fmt.list(replay)])
    train(
        stream, root / "run", preset=MICRO, steps=2, save_every=1, batch=2, length=8, progress=False
    )
    upgrade(url)
    store = open_store(url)
    started = time.perf_counter()
    ingestor = Ingestor(store, IngestRequest(logdir=root / "run", replay=(replay,)))
    report = ingestor.run(ingestor.submit(started_by="bench").id)
    ingest_rows_per_s = report.written * LENGTH / (time.perf_counter() - started)
    queries = store.queries
    run = queries.list_runs().items[0]
    episodes = [e.id for e in queries.list_episodes(run_id=run.id).items]
    real = queries.list_traces(limit=1000).items
    real_traces = [t.id for t in real]
    checkpoint = max(t.checkpoint_id for t in real)
    rng = np.random.default_rng(0)
    have = sum(t.length for t in queries.list_traces(limit=1000).items)
    started = time.perf_counter()
    n = 0
    while have < rows:
        ckpt = store.writer.ensure_checkpoint(
            run.id,
            content_hash=f"synthetic-{n:06d}",
            format="native",
            source_path="/dev/null",
            step=10_000 + n,
        )
        for episode in episodes:
            if have >= rows:
                break
            store.writer.write_trace(ckpt, episode, "filter", "mode", synthetic(rng))
            have += LENGTH
        n += 1
    build_s = time.perf_counter() - started
    secret = store.access.create_token("bench", scope="admin", who="bench")[1]
    store.close()
    return {
        "ingest_rows_per_s": ingest_rows_per_s,
        "checkpoint": checkpoint,
        "episodes": episodes,
        "traces": real_traces,
        "token": secret,
        "rows": have,
        "synthetic_rows_per_s": (have - 4 * LENGTH) / max(build_s, 1e-9),
    }


def synthetic(rng: np.random.Generator) -> TraceData:
    metrics = {name: rng.gamma(2.0, 1.0, LENGTH) for name in METRICS}
    metrics["deter_delta"][0] = np.nan
    return TraceData(metrics=metrics, kl_groups=rng.random((LENGTH, 4)).astype(np.float32))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1000
    return {
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
        "n": len(ms),
    }


def timed(call: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        out.append(time.perf_counter() - t)
    return out


def ok(response: httpx.Response) -> httpx.Response:
    assert response.status_code < 400, (response.status_code, response.text[:300])
    return response


def latency(base: str, url: str, info: dict, n: int) -> dict[str, object]:
    store = open_store(url)
    trace = next(t for t in store.queries.list_traces(limit=1000).items if t.length == LENGTH)
    episode = info["episodes"][0]
    with httpx.Client(base_url=base, timeout=60) as c:
        series = f"/api/v1/traces/{trace.id}/series"
        ok(c.get(series))
        api_trace = timed(lambda: ok(c.get(series)), n)
        layer = timed(lambda: store.queries.read_trace(trace_id=trace.id), n)
        frame = f"/api/v1/episodes/{episode}/frames"
        ok(
            c.get(
                f"{frame}/0",
                params={"panels": "recon,pred,error", "checkpoint": info["checkpoint"]},
            )
        )  # model run + decodes
        steps = random.Random(0).sample(range(LENGTH), n)
        overlay = [0.0] * n
        plain = [0.0] * n
        for i, t in enumerate(steps):  # distinct steps: every render misses the frame cache
            s = time.perf_counter()
            ok(
                c.get(
                    f"{frame}/{t}",
                    params={"panels": "recon,pred,error", "checkpoint": info["checkpoint"]},
                )
            )
            overlay[i] = time.perf_counter() - s
            s = time.perf_counter()
            ok(c.get(f"{frame}/{t}", params={"scale": 4}))
            plain[i] = time.perf_counter() - s
        cached = timed(
            lambda: ok(
                c.get(
                    f"{frame}/{steps[0]}",
                    params={"panels": "recon,pred,error", "checkpoint": info["checkpoint"]},
                )
            ),
            n,
        )
    store.close()
    result = {
        "trace_read_1000_steps_all_metrics_ms": percentiles(api_trace),
        "read_layer_in_process_ms": percentiles(layer),
        "overlay_frame_uncached_ms": percentiles(overlay),
        "plain_frame_uncached_ms": percentiles(plain),
        "overlay_frame_cached_ms": percentiles(cached),
    }
    result["ratio_api_trace_vs_read_layer_p50"] = (
        result["trace_read_1000_steps_all_metrics_ms"]["p50"]
        / result["read_layer_in_process_ms"]["p50"]
    )
    result["ratio_overlay_vs_plain_frame_p50"] = (
        result["overlay_frame_uncached_ms"]["p50"] / result["plain_frame_uncached_ms"]["p50"]
    )
    return result


def writer_loop(url: str, stop_at: float, episode: int, rows_per_s: float) -> int:
    """Write synthetic traces through the ingest's bulk writer until `stop_at`, at the rate
    the real ingest reached while building the store (an ingest computes between writes;
    a loop writing back to back would measure SQLite writer starvation, not the API)."""
    store = open_store(url)
    rng = np.random.default_rng(1)
    run = store.queries.get_episode(episode_id=episode).run_id
    began = time.time()
    n = 0
    while time.time() < stop_at:
        ckpt = store.writer.ensure_checkpoint(
            run, content_hash=f"load-{os.getpid()}-{n}", format="native", source_path="/dev/null"
        )
        store.writer.write_trace(ckpt, episode, "filter", "mode", synthetic(rng))
        n += 1
        time.sleep(max(0.0, n * LENGTH / rows_per_s - (time.time() - began)))
    store.close()
    return n


def load(base: str, url: str, info: dict, root: Path, clients: int, duration: float) -> dict:
    headers = {"Authorization": f"Bearer {info['token']}"}
    traces = info["traces"]
    episodes = info["episodes"]
    stop_at = time.time() + duration
    writer = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--writer",
            url,
            str(stop_at),
            str(episodes[0]),
            str(info["ingest_rows_per_s"]),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    with httpx.Client(base_url=base, timeout=60, headers=headers) as c:  # a real ingest job too
        job = ok(c.post("/api/v1/jobs", json={"root": str(root / "run"), "run": "bench-reingest"}))
    latencies: list[float] = []
    errors: list[str] = []
    kinds: dict[str, int] = {}
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=base, timeout=60, headers=headers) as c:
            while time.time() < stop_at:
                roll = rng.random()
                trace = rng.choice(traces)
                method, path, params, body = "GET", f"/api/v1/traces/{trace}/series", {}, None
                if roll < 0.35:
                    kind, params = "series", {"max_points": 500}
                elif roll < 0.6:
                    ep, t = rng.choice(episodes), rng.randrange(LENGTH)
                    kind, path = "frame", f"/api/v1/episodes/{ep}/frames/{t}"
                    params = {"panels": "recon,error", "checkpoint": info["checkpoint"]}
                elif roll < 0.8:
                    kind, path, params = "flags", "/api/v1/flags", {"trace_id": trace}
                else:
                    t0 = rng.randrange(LENGTH - 10)
                    kind, method, path = "flag_write", "POST", "/api/v1/flags"
                    body = {"trace_id": trace, "t0": t0, "t1": t0 + 5, "severity": "low"}
                s = time.perf_counter()
                try:
                    answer = c.request(method, path, params=params, json=body)
                    bad = answer.status_code >= 400
                    text = answer.text[:200] if bad else ""
                except httpx.HTTPError as err:
                    bad, text = True, repr(err)
                with lock:
                    latencies.append(time.perf_counter() - s)
                    kinds[kind] = kinds.get(kind, 0) + 1
                    if bad:
                        errors.append(f"{kind}: {text}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - started
    written = int(writer.communicate()[0].strip() or 0)
    with httpx.Client(base_url=base, timeout=60, headers=headers) as c:
        job_state = c.get(f"/api/v1/jobs/{job.json()['id']}").json()["state"]
    return {
        "clients": clients,
        "seconds": elapsed,
        "requests": len(latencies),
        "requests_per_s": len(latencies) / elapsed,
        "latency_ms": percentiles(latencies),
        "by_kind": kinds,
        "errors": len(errors),
        "database_is_locked": sum("database is locked" in e for e in errors),
        "first_errors": errors[:5],
        "ingest_job_state": job_state,
        "ingest_rows_written_during_load": written * LENGTH,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--writer", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        writer_loop(
            args.writer[0], float(args.writer[1]), int(args.writer[2]), float(args.writer[3])
        )
        return 0
    if args.quick:
        args.rows, args.clients, args.seconds, args.samples = 100_000, 8, 5, 50
    with tempfile.TemporaryDirectory(prefix="beliefscope-bench-") as tmp:
        root = Path(tmp) / "data"
        home = Path(tmp) / "home"
        url = f"sqlite:///{tmp}/store.db"
        os.environ["BELIEFSCOPE_HOME"] = str(home)
        started = time.perf_counter()
        info = build(root, url, args.rows)
        took = time.perf_counter() - started
        print(f"built a store with {info['rows']:,} step rows in {took:.0f} s")
        port = free_port()
        env = {**os.environ, "BELIEFSCOPE_DATA_ROOTS": json.dumps([str(root)])}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "beliefscope.cli",
                "serve",
                "--store",
                url,
                "--port",
                str(port),
                "--no-dashboard",
                "--log-level",
                "warning",
            ],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            report = {
                "rows": info["rows"],
                "synthetic_rows_per_s": info["synthetic_rows_per_s"],
                "ingest_rows_per_s": info["ingest_rows_per_s"],
            }
            report["latency"] = latency(base, url, info, args.samples)
            report["load"] = load(base, url, info, root, args.clients, args.seconds)
        finally:
            server.terminate()
            _, stderr = server.communicate(timeout=30)
        report["load"]["server_log_database_is_locked"] = stderr.count("database is locked")
        print(json.dumps(report, indent=2))
        lat, ld = report["latency"], report["load"]
        trace_p95 = lat["trace_read_1000_steps_all_metrics_ms"]["p95"]
        frame_p50 = lat["overlay_frame_uncached_ms"]["p50"]
        print(
            f"\ntrace read (1000 steps, all metrics) p95 {trace_p95:.1f} ms (target <= 25; "
            f"{lat['ratio_api_trace_vs_read_layer_p50']:.2f}x the read layer in-process)\n"
            f"overlay frame p50 {frame_p50:.1f} ms (target <= 15; "
            f"{lat['ratio_overlay_vs_plain_frame_p50']:.2f}x a plain frame)\n"
            f"load: {ld['requests_per_s']:.0f} req/s, p99 {ld['latency_ms']['p99']:.0f} ms, "
            f"{ld['errors']} errors, {ld['database_is_locked']} 'database is locked'"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
