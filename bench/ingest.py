"""Ingest speed and memory, every figure a ratio measured in the same run.

    python bench/ingest.py [--preset small] [--episodes 64] [--steps 500] [--baseline 4]
                           [--memory 64,256] [--pg URL]
    python bench/ingest.py --executor dask [--workers 1,2] [--episodes 32] [--steps 200]
    python bench/ingest.py --profile [--profile-steps 200] [--rounds 3] [--before main]
                           [--precision bf16]

Workload: a `--preset` native model on 64x64 frames of the MuJoCo occlusion world,
`--episodes` x `--steps`.
1. Batched recompute (`ingest.compute`, batches of 16 episodes) vs a per-episode, batch-1
   step loop (how the reference implementations' `observe` runs: one step at a time, each
   step's decodes and open-loop rollout on their own), on `--baseline` episodes; metrics of
   both must agree to 1e-5.
2. End-to-end ingest (read files -> compute -> commit to SQLite) vs model compute alone.
3. Store writes: step-rows/s into SQLite and PostgreSQL and the ratio to the bare driver writing
   the same rows (`bench/store.py`'s `write_rates`).
4. Peak memory (max RSS of a fresh ingest process) at each of `--memory` episode counts.
With `--executor dask`, only: end-to-end ingest into PostgreSQL in this process vs on a local
Dask cluster of each `--workers` count (started and warmed before timing; 1 torch thread each).
With `--profile`, only: the compute profile of a default-size dreamerv3-torch model against
the reference-style step loop, git `--before`'s `compute_traces` and the FLOP bounds
(`bench/compute_profile.py`); `--profile-steps 50 --rounds 1` is a quick run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beliefscope.config import get_settings  # noqa: E402
from beliefscope.replay.base import Episode, detect_format  # noqa: E402
from beliefscope.rssm import core  # noqa: E402
from beliefscope.rssm.checkpoint import save_checkpoint  # noqa: E402
from beliefscope.rssm.dist import correction  # noqa: E402
from beliefscope.rssm.native import NativeWorldModel  # noqa: E402
from beliefscope.rssm.presets import get_preset  # noqa: E402
from beliefscope.store.engine import open_store, upgrade  # noqa: E402
from beliefscope.world.generate import Generator, WorldConfig  # noqa: E402
from bench import compute_profile  # noqa: E402
from bench import store as store_bench  # noqa: E402
from ingest.compute import ComputeOptions, compute_traces, pad_batch  # noqa: E402
from ingest.request import IngestRequest  # noqa: E402
from ingest.service import Ingestor  # noqa: E402

BATCH = 16
OPENLOOP = 5


def world(cache: Path, episodes: int, steps: int) -> Path:
    out = cache / f"world-{steps}"
    have = len(list(out.glob("*.npz"))) if out.exists() else 0
    if have < episodes:
        gen = Generator(out, WorldConfig(seed=11, length=steps))
        try:
            for i, _ in enumerate(gen.episodes(episodes)):
                if i < have:
                    continue
        finally:
            gen.close()
    return out


def subset(root: Path, count: int, into: Path) -> Path:
    """A replay dir with the first `count` episodes (hard links: no copies)."""
    into.mkdir(parents=True, exist_ok=True)
    for name in ("world.json", "scene.xml"):
        (into / name).write_bytes((root / name).read_bytes())
    for path in sorted(root.glob("*.npz"))[:count]:
        target = into / path.name
        if not target.exists():
            target.hardlink_to(path)
    return into


def step_loop(model: NativeWorldModel, ep: Episode) -> dict[str, np.ndarray]:
    """The baseline: one episode, one step at a time, batch of one."""
    cell = model.cell
    image = torch.from_numpy(ep.image)[None]  # (1, T, H, W, C)
    action = torch.from_numpy(ep.action)[None]
    is_first = torch.from_numpy(ep.is_first)[None]
    state = cell.initial(1)
    states: list[core.State] = []
    out: dict[str, list[float]] = {
        k: [] for k in ("kl", "correction", "recon_error", "pred_error", "openloop_error")
    }
    for t in range(ep.length):
        state, act = core.reset(cell, state, action[:, t], is_first[:, t])
        deter, prior = cell.img_step(state, act)
        post = cell.obs_dist(deter, model.encode(image[:, t : t + 1])[:, 0])
        state = {"deter": deter, "stoch": post.mode()}
        states.append(state)
        frame = image[:, t].float() / 255.0
        recon = model.decode(model.feat(deter, state["stoch"]))
        pred = model.decode(model.feat(deter, prior.mode()))
        out["kl"].append(float(post.kl(prior)))
        out["correction"].append(float(correction(post, prior)))
        out["recon_error"].append(float(((recon - frame) ** 2).mean()))
        out["pred_error"].append(float(((pred - frame) ** 2).mean()))
        err = float("nan")
        if t >= OPENLOOP and not bool(is_first[0, t - OPENLOOP + 1 : t + 1].any()):
            imag = core.imagine(cell, states[t - OPENLOOP], action[:, t - OPENLOOP + 1 : t + 1])
            dec = model.decode(model.feat(imag.deter[:, -1], imag.stoch[:, -1]))
            err = float(((dec - frame) ** 2).mean())
        out["openloop_error"].append(err)
    return {k: np.asarray(v) for k, v in out.items()}


def compare(model: NativeWorldModel, replay: Path, count: int) -> tuple[float, float, float]:
    fmt = detect_format(replay)
    episodes = [fmt.load(ref) for ref in fmt.list(replay)[:count]]
    options = ComputeOptions(openloop=OPENLOOP)
    with torch.inference_mode():
        began = time.perf_counter()
        loops = [step_loop(model, ep) for ep in episodes]
        loop_s = time.perf_counter() - began
    began = time.perf_counter()
    batched = compute_traces(model, pad_batch(episodes), options)
    batch_s = time.perf_counter() - began
    diff = max(
        float(np.nanmax(np.abs(trace.metrics[k] - loop[k])))
        for trace, loop in zip(batched, loops, strict=True)
        for k in loop
    )
    steps = sum(ep.length for ep in episodes)
    return steps / loop_s, steps / batch_s, diff


def compute_alone(model: NativeWorldModel, replay: Path) -> float:
    fmt = detect_format(replay)
    refs = sorted(fmt.list(replay), key=lambda r: r.length)
    episodes = [fmt.load(ref) for ref in refs]  # loaded up front: compute only is timed
    began = time.perf_counter()
    for i in range(0, len(episodes), BATCH):
        compute_traces(model, pad_batch(episodes[i : i + BATCH]), ComputeOptions(openloop=OPENLOOP))
    return sum(ep.length for ep in episodes) / (time.perf_counter() - began)


def end_to_end(run: Path, replay: Path, url: str) -> float:
    upgrade(url)
    request = IngestRequest(logdir=run, replay=(replay,), batch_size=BATCH)
    began = time.perf_counter()
    ingestor = Ingestor(open_store(url), request)
    report = ingestor.run(ingestor.submit(started_by="bench").id)
    elapsed = time.perf_counter() - began
    assert not report.errors, report.errors
    fmt = detect_format(replay)
    return sum(ref.length for ref in fmt.list(replay)) / elapsed


_MEASURE = (
    "import resource, subprocess, sys;"
    " subprocess.run(sys.argv[1:], check=True, capture_output=True);"
    " print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_rss_mb(run: Path, replay: Path, url: str) -> float:
    """Max RSS of a fresh `beliefscope ingest` process (what a user runs), measured by a fresh
    parent so earlier measurements don't leak into this one."""
    upgrade(url)
    cmd = [
        sys.executable,
        "-m",
        "beliefscope.cli",
        "ingest",
        str(run),
        "--replay",
        str(replay),
        "--store",
        url,
        "--threads",
        "1",
        "--batch-size",
        str(BATCH),
    ]
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, *cmd], check=True, capture_output=True, text=True
    )
    return int(out.stdout.split()[-1]) / 1024


def store_rows_per_s(url: str) -> tuple[float, float]:
    """Step-rows/s of `write_trace` and of the bare driver on the same units, in turn."""
    upgrade(url)
    store = open_store(url)
    try:
        return store_bench.write_rates(store, 200_000, offset=0)
    finally:
        store.close()


def cluster_steps_per_s(run: Path, replay: Path, url: str, workers: int) -> float:
    """End-to-end ingest throughput on a local Dask cluster of `workers` (0: in-process)."""
    import distributed

    from ingest.executors import DaskExecutor, LocalExecutor

    upgrade(url)
    request = IngestRequest(logdir=run, replay=(replay,), batch_size=4)
    cluster = (
        distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, dashboard_address=None, silence_logs=40
        )
        if workers
        else None
    )
    try:
        if cluster is not None:
            with distributed.Client(cluster) as client:  # warm: imports done before timing
                client.run(lambda: __import__("ingest.service") and None)
        executor = (
            DaskExecutor(address=cluster.scheduler_address, threads=1)
            if cluster
            else LocalExecutor()
        )
        began = time.perf_counter()
        ingestor = Ingestor(open_store(url), request)
        report = ingestor.run(ingestor.submit(started_by="bench").id, executor=executor)
        elapsed = time.perf_counter() - began
    finally:
        if cluster is not None:
            cluster.close()
    assert not report.errors, report.errors
    return sum(ref.length for ref in detect_format(replay).list(replay)) / elapsed


def cluster_main(args: argparse.Namespace, root: Path) -> None:
    counts = [int(n) for n in args.workers.split(",") if n]
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = NativeWorldModel(get_preset(args.preset), action_dim=3).eval()
        save_checkpoint(model, tmp / "run", 1)
        replay = subset(root, args.episodes, tmp / "replay")
        for workers in [0, *counts]:
            with store_bench.scratch_pg(args.pg) as url:
                results[f"dask_{workers}_steps_per_s" if workers else "local_steps_per_s"] = (
                    cluster_steps_per_s(tmp / "run", replay, url, workers)
                )
    local = results["local_steps_per_s"]
    line = " | ".join(
        f"{n} worker{'s' if n > 1 else ''} {results[f'dask_{n}_steps_per_s']:7.0f} steps/s "
        f"({results[f'dask_{n}_steps_per_s'] / local:4.2f}x)"
        for n in counts
    )
    print(f"cluster    in-process {local:7.0f} steps/s | Dask {line} (files -> PostgreSQL)")
    print(json.dumps({k: float(f"{v:.6g}") for k, v in results.items()}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="small")
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--baseline", type=int, default=4, help="episodes for the step loop")
    parser.add_argument("--memory", default="64,256", help="episode counts for peak memory")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--executor", choices=["local", "dask"], default="local")
    parser.add_argument("--workers", default="1,2", help="Dask worker counts (--executor dask)")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "beliefscope-bench"
    )
    parser.add_argument(
        "--pg",
        default=get_settings().test_pg or "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="PostgreSQL server URL (a scratch database is created and dropped)",
    )
    parser.add_argument("--profile", action="store_true", help="the compute profile only")
    parser.add_argument("--profile-steps", type=int, default=200, help="steps per episode")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of the profile")
    parser.add_argument(
        "--loop-episodes", type=int, default=2, help="episodes of the profile's step loop"
    )
    parser.add_argument(
        "--before", default="main", help="git ref of the profile's `before` row ('': none)"
    )
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.profile:
        results = compute_profile.profile(
            steps=args.profile_steps,
            rounds=args.rounds,
            loop_episodes=args.loop_episodes,
            before=args.before,
            precision=args.precision,
        )
        print(json.dumps({k: float(f"{v:.6g}") for k, v in results.items()}))
        return
    if args.executor == "dask":
        cluster_main(args, world(args.cache, args.episodes, args.steps))
        return
    memory_counts = [int(n) for n in args.memory.split(",") if n]
    root = world(args.cache, max([args.episodes, *memory_counts]), args.steps)
    model = NativeWorldModel(get_preset(args.preset), action_dim=3).eval()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        run = tmp / "run"
        save_checkpoint(model, run, 1)
        replay = subset(root, args.episodes, tmp / f"replay-{args.episodes}")
        results: dict[str, float] = {}
        loop_sps, batch_sps, diff = compare(model, replay, args.baseline)
        results |= {
            "loop_steps_per_s": loop_sps,
            "batched_steps_per_s": batch_sps,
            "max_abs_diff": diff,
        }
        print(
            f"recompute  batch-1 step loop {loop_sps:8.0f} steps/s | "
            f"batched {batch_sps:8.0f} steps/s "
            f"| speedup {batch_sps / loop_sps:5.1f}x (target >= 8x) | max |diff| {diff:.1e}",
            flush=True,
        )
        alone = compute_alone(model, replay)
        e2e = end_to_end(run, replay, f"sqlite:///{tmp / 'e2e.db'}")
        results |= {"compute_steps_per_s": alone, "e2e_steps_per_s": e2e}
        print(
            f"ingest     compute alone {alone:8.0f} steps/s | end to end (files -> SQLite) "
            f"{e2e:8.0f} steps/s | ratio {e2e / alone:4.2f} (target >= 0.8)",
            flush=True,
        )
        for n in memory_counts:
            mem_replay = subset(root, n, tmp / f"replay-{n}")
            results[f"peak_rss_mb_{n}"] = peak_rss_mb(
                run, mem_replay, f"sqlite:///{tmp / f'mem{n}.db'}"
            )
        if memory_counts:
            line = " | ".join(
                f"{n} episodes {results[f'peak_rss_mb_{n}']:6.0f} MB" for n in memory_counts
            )
            print(f"memory     peak RSS of `beliefscope ingest`: {line} (target: flat, < 2048 MB)")
    with tempfile.TemporaryDirectory() as tmp_name:
        sqlite_rates = store_rows_per_s(f"sqlite:///{tmp_name}/w.db")
    with store_bench.scratch_pg(args.pg) as url:
        pg_rates = store_rows_per_s(url)
    parts: list[str] = []
    for name, (rate, bare) in (("SQLite", sqlite_rates), ("PostgreSQL", pg_rates)):
        key = name.lower()
        results |= {f"{key}_rows_per_s": rate, f"{key}_bare_rows_per_s": bare}
        parts.append(f"{name} {rate:9.0f} step-rows/s = {rate / bare:4.2f}x the bare driver")
    print(f"store      writes: {' | '.join(parts)} (target >= 0.85x)", flush=True)
    print(json.dumps({k: float(f"{v:.6g}") for k, v in results.items()}))


if __name__ == "__main__":
    main()
