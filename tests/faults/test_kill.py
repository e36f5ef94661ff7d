"""kill -9 of an ingest at random points, 20 times over, on SQLite and PostgreSQL: after a
re-run every trace is stored exactly once and whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.integrity import assert_complete_once

PROBES = ["filter", "delay:1", "delay:2", "dropout:5-15"]  # 32 units: room for 20 kills
EXPECTED = 2 * 4 * len(PROBES)  # checkpoints x episodes x variants


def harness(mode: str, url: str, run: Path, replay: Path, *extra: str, timeout: int = 600) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "tests.faults.harness",
        mode,
        "--url",
        url,
        "--run",
        str(run),
        "--replay",
        str(replay),
        *extra,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow
def test_twenty_kills_then_a_rerun_store_every_trace_once(
    store_url: str, world: Path, run_dir: Path
) -> None:
    result = harness(
        "kill",
        store_url,
        run_dir,
        world,
        *(f"--variant={p}" for p in PROBES),
        "--rounds",
        "20",
        "--seed",
        "7",
    )
    rounds = result["rounds"]
    assert len(rounds) == 20, rounds
    # a child may finish before its kill (late rounds on a fast machine): it must have exited
    # cleanly, and the kills that did land mid-ingest are counted below
    assert all(r["killed"] or r["exit"] == 0 for r in rounds), rounds
    for r in rounds:  # after every single kill: whole traces only, none twice, no stray rows
        assert (r["partial"], r["duplicates"], r["orphan_steps"], r["arrayless"]) == (0, 0, 0, 0), r
    mid_ingest = [
        r for r in rounds if r["killed"] and r["new_traces"] > 0 and r["traces"] < EXPECTED
    ]
    assert len(mid_ingest) >= 8, f"kills must land mid-ingest: {rounds}"
    assert result["final_exit"] == 0
    assert_complete_once(store_url, EXPECTED)
    print(
        f"\nkill -9 x20: {len(mid_ingest)} mid-write, traces after kills "
        f"{rounds[-1]['traces']}/{EXPECTED}, kill times {[r['at_s'] for r in rounds]}"
    )


@pytest.mark.slow
def test_two_ingests_of_overlapping_work_write_each_trace_once(
    store_url: str, world: Path, run_dir: Path, tmp_path: Path
) -> None:
    first, second = ["filter", "delay:1", "delay:2"], ["delay:1", "delay:2", "dropout:5-15"]
    result = harness(
        "concurrent",
        store_url,
        run_dir,
        world,
        *(f"--variant={p}" for p in first),
        *(f"--other-variant={p}" for p in second),
        "--timeout",
        "300",
        "--out",
        str(tmp_path),
    )
    assert result["exits"] == [0, 0], f"an ingest failed or deadlocked: {result}"
    unique = 2 * 4 * len(set(first) | set(second))
    written = sum(r["written"] for r in result["reports"])
    skipped = sum(r["skipped"] for r in result["reports"])
    assert all(r["errors"] == [] for r in result["reports"])
    assert written == unique, result  # each unit written by exactly one of the two
    assert written + skipped == 2 * 4 * (len(first) + len(second))
    assert_complete_once(store_url, unique)


@pytest.mark.slow
def test_a_child_that_finishes_before_its_kill_is_recorded_not_signalled(
    sqlite_url: str, world: Path, run_dir: Path
) -> None:
    probes = [f"--variant={p}" for p in PROBES]
    harness("kill", sqlite_url, run_dir, world, *probes, "--rounds", "0")  # final run fills it
    # an even round waits for a commit that never comes: the child exits with nothing to do
    result = harness("kill", sqlite_url, run_dir, world, *probes, "--rounds", "1")
    assert [(r["killed"], r["exit"], r["new_traces"]) for r in result["rounds"]] == [
        (False, 0, 0)
    ], result
    assert_complete_once(sqlite_url, EXPECTED)
