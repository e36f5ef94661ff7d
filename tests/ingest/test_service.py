"""Ingest end to end into real stores: idempotence, bad input, kill -9, concurrent readers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from beliefscope.store.engine import open_store
from ingest.request import IngestRequest
from ingest.service import Ingestor
from ingest.watch import watch
from tests.builders import ingest_run, make_run


def _traces(url: str) -> list[tuple[int, int, str, int, int]]:
    """(checkpoint, episode, variant, declared length, stored step rows) of every trace."""
    store = open_store(url)
    q = store.queries
    out = []
    for run in q.list_runs().items:
        for ck in q.list_checkpoints(run_id=run.id).items:
            for ep in q.list_episodes(run_id=run.id).items:
                for tr in q.list_traces(checkpoint_id=ck.id, episode_id=ep.id).items:
                    rows = q.read_trace(trace_id=tr.id, metrics=["kl"]).series["kl"]
                    out.append((ck.id, ep.id, tr.variant, tr.length, len(rows.t)))
    return out


def test_ingest_end_to_end_and_rerun_skips(store_url: str, world: Path, run_dir: Path) -> None:
    report = ingest_run(store_url, run_dir, world, variants=("filter", "dropout:occluded"))
    assert report.errors == []
    assert report.written == 2 * 4 * 2  # checkpoints x episodes x variants
    traces = _traces(store_url)
    assert len(traces) == 16 and all(length == rows == 40 for *_, length, rows in traces)
    again = ingest_run(store_url, run_dir, world, variants=("filter", "dropout:occluded"))
    assert again.written == 0 and again.skipped == 16
    assert len(_traces(store_url)) == 16
    q = open_store(store_url).queries
    (run,) = q.list_runs().items
    ep = q.list_episodes(run_id=run.id).items[0]
    assert ep.has_truth and "occluded_steps" in ep.truth_summary
    # the default review rules were stored and applied to the new traces

    store = open_store(store_url)
    assert {i.rule.metric for i in store.reviews.list_rules()} >= {"kl", "correction"}
    assert store.reviews.read_metric_columns(metric="kl", variant="filter").trace_ids.size == 8
    ck = q.list_checkpoints(run_id=run.id).items[0]
    assert ck.family == "native" and ck.step in (1, 2) and len(ck.content_hash) == 64


def test_bad_units_are_recorded_and_the_rest_goes_on(
    sqlite_url: str, world: Path, run_dir: Path, tmp_path: Path
) -> None:
    replay = tmp_path / "replay"
    shutil.copytree(world, replay)
    victim = sorted(replay.glob("*.npz"))[0]
    victim.write_bytes(victim.read_bytes()[:5000])  # truncated mid-file
    runs = tmp_path / "run"
    shutil.copytree(run_dir, runs)
    bad_ckpt = runs / "ckpt-00000009.safetensors"
    bad_ckpt.write_bytes(b"\x00" * 100)
    report = ingest_run(sqlite_url, runs, replay)
    assert report.written == 2 * 3
    joined = "\n".join(report.errors)
    assert victim.name in joined and bad_ckpt.name in joined
    q = open_store(sqlite_url).queries
    job = q.get_job(job_id=report.job_id)
    assert job.state == "done"
    files = {e.file for e in q.list_job_errors(job_id=report.job_id).items}
    assert str(victim) in files and str(bad_ckpt) in files


def test_frames_that_do_not_fit_the_model_are_refused(
    sqlite_url: str, world: Path, tmp_path: Path
) -> None:
    from tests.builders import make_world

    other = make_world(tmp_path / "small", episodes=1, length=12, seed=3)
    run = tmp_path / "run"
    make_run(run, world, steps=1)
    import json

    manifest = json.loads((other / "world.json").read_text())
    assert manifest["world"]["image_size"] == 64
    # a model trained on 64x64 frames given 32x32 frames: generate them with --size 32
    from beliefscope.world.generate import Generator, WorldConfig

    gen = Generator(tmp_path / "tiny_frames", WorldConfig(seed=1, length=12, size=32))
    list(gen.episodes(1))
    gen.close()
    report = ingest_run(sqlite_url, run, tmp_path / "tiny_frames")
    assert report.written == 0
    assert any("(32, 32, 3)" in e and "(64, 64, 3)" in e for e in report.errors)


def test_kill_9_mid_ingest_leaves_no_partial_trace(
    sqlite_url: str, world: Path, run_dir: Path, tmp_path: Path
) -> None:
    """Kill the ingest process as soon as it has committed something; re-run; every unit is
    stored exactly once with all its step rows."""
    env = {
        **os.environ,
        "BELIEFSCOPE_HOME": str(tmp_path / "home"),
        "BELIEFSCOPE_STORE": sqlite_url,
    }
    cmd = [
        sys.executable,
        "-m",
        "beliefscope.cli",
        "ingest",
        str(run_dir),
        "--replay",
        str(world),
        "--batch-size",
        "1",
        "--variant",
        "delay:2",
        "--variant",
        "dropout:5-15",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if _traces(sqlite_url):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _traces(sqlite_url)
    assert 0 < len(partial) < 24, "the kill must land mid-way"
    assert all(length == rows for *_, length, rows in partial)
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    final = _traces(sqlite_url)
    assert len(final) == 24 == len({t[:3] for t in final})
    assert all(length == rows == 40 for *_, length, rows in final)


def test_readers_see_whole_traces_while_ingest_writes(
    sqlite_url: str, world: Path, run_dir: Path
) -> None:
    errors: list[BaseException] = []
    seen: list[int] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                traces = _traces(sqlite_url)
                assert all(length == rows for *_, length, rows in traces)
                seen.append(len(traces))
            except BaseException as err:  # noqa: BLE001 - collected and re-raised below
                errors.append(err)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        ingest_run(sqlite_url, run_dir, world, batch_size=1, variants=("filter", "delay:1"))
    finally:
        done.set()
        thread.join()
    assert not errors, errors
    assert len(seen) > 1 and seen == sorted(seen)


def test_watch_snapshots_an_overwritten_latest_checkpoint(
    sqlite_url: str, world: Path, run_dir: Path, tmp_path: Path
) -> None:
    """Training code that rewrites one file: each version becomes its own checkpoint."""
    live = tmp_path / "live"
    live.mkdir()
    first, second = sorted(run_dir.glob("ckpt-*.safetensors"))
    latest = live / "ckpt-00000001.safetensors"
    shutil.copyfile(first, latest)
    request = IngestRequest(logdir=live, replay=(world,))
    assert watch(request, sqlite_url, interval=0, cycles=1, log=False) == 4
    shutil.copyfile(second, latest)  # overwritten in place, same name
    assert watch(request, sqlite_url, interval=0, cycles=1, log=False) == 4
    q = open_store(sqlite_url).queries
    (run,) = q.list_runs().items
    hashes = {c.content_hash for c in q.list_checkpoints(run_id=run.id).items}
    assert len(hashes) == 2
    # an idle cycle writes nothing and opens no job
    jobs_before = q.list_jobs().total
    assert watch(request, sqlite_url, interval=0, cycles=1, log=False) == 0
    assert q.list_jobs().total == jobs_before
    assert Ingestor(open_store(sqlite_url), request).pending() == 0


def test_sampled_posterior_is_reproducible(sqlite_url: str, world: Path, run_dir: Path) -> None:
    a = ingest_run(sqlite_url, run_dir, world, posterior="sample", seed=7, run_name="a")
    b = ingest_run(sqlite_url, run_dir, world, posterior="sample", seed=7, run_name="b")
    assert a.written == b.written == 8
    q = open_store(sqlite_url).queries
    runs = {r.name: r.id for r in q.list_runs().items}

    def kls(run: str) -> list[np.ndarray]:
        out = []
        for ck in q.list_checkpoints(run_id=runs[run]).items:
            for ep in q.list_episodes(run_id=runs[run]).items:
                (tr,) = q.list_traces(checkpoint_id=ck.id, episode_id=ep.id).items
                assert tr.posterior == "sample:7"
                out.append(q.read_trace(trace_id=tr.id, metrics=["kl"]).series["kl"].values)
        return out

    for x, y in zip(kls("a"), kls("b"), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    "args",
    [["/no/such/dir"], ["{run}", "--replay", "/no/such/replay"], ["{run}", "--variant", "warp:3"]],
)
def test_cli_bad_paths_fail_in_one_line(args: list[str], run_dir: Path, sqlite_url: str) -> None:
    args = [a.format(run=run_dir) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "beliefscope.cli", "ingest", *args, "--store", sqlite_url],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("beliefscope ingest: error:"), proc.stderr
