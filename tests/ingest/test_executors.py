"""Distributed ingest on a real local Dask cluster of 2 worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import distributed
import pytest

from beliefscope.errors import BadInputError
from beliefscope.store.engine import Store, open_store, upgrade
from ingest.executors import DaskExecutor, JobIdentity, preflight
from ingest.request import IngestRequest
from ingest.units import UnitResult, WorkUnit
from tests.builders import ingest
from tests.faults.integrity import assert_complete_once


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A 2-worker local cluster shared by this module's tests (reached by its address)."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, dashboard_address=None, silence_logs=40
    ) as local:
        yield local.scheduler_address


class _Count:
    def __init__(self) -> None:
        self.total, self.done = 0, 0

    def start(self, total: int) -> None:
        self.total = total

    def advance(self, units: int, description: str) -> None:
        self.done += units


class _Plan:
    """An executor that only keeps the units it is given: the planned work of a job."""

    units: list[WorkUnit]

    def map(
        self, store: Store, request: IngestRequest, units: Sequence[WorkUnit]
    ) -> Iterator[tuple[WorkUnit, UnitResult]]:
        self.units = list(units)
        return iter(())


def _planned(store: Store, request: IngestRequest) -> tuple[int, list[WorkUnit]]:
    plan = _Plan()
    report = ingest(store, request, executor=plan)
    return report.job_id, plan.units


def _filter_kl(url: str) -> list[float]:
    q = open_store(url).queries
    (run,) = q.list_runs().items
    checkpoint = q.list_checkpoints(run_id=run.id).items[-1]
    episode = q.list_episodes(run_id=run.id).items[0]
    (trace,) = q.list_traces(
        checkpoint_id=checkpoint.id, episode_id=episode.id, variant="filter"
    ).items
    return list(q.read_trace(trace_id=trace.id, metrics=["kl"]).series["kl"].values)


def test_dask_ingest_is_local_ingest_on_workers(
    store_url: str, tmp_path: Path, cluster: str, world: Path, run_dir: Path
) -> None:
    request = IngestRequest(
        logdir=run_dir, replay=(world,), batch_size=2, variants=("filter", "delay:1")
    )
    progress = _Count()
    report = ingest(
        open_store(store_url), request, progress, DaskExecutor(address=cluster, retry_pause_s=0.1)
    )
    assert report.errors == [] and report.written == 2 * 4 * 2
    assert progress.done == progress.total == 16
    assert_complete_once(store_url, 16)
    job = open_store(store_url).queries.get_job(job_id=report.job_id)
    assert (job.state, job.done, job.total) == ("done", 16, 16)

    local = f"sqlite:///{tmp_path / 'local.db'}"
    upgrade(local)
    ingest(open_store(local), request)
    assert _filter_kl(store_url) == pytest.approx(_filter_kl(local), rel=1e-5, abs=1e-6)

    again = ingest(open_store(store_url), request, executor=DaskExecutor(address=cluster))
    assert again.written == 0 and again.skipped == 16


def test_a_failing_unit_is_retried_then_reported(
    sqlite_url: str, cluster: str, world: Path, run_dir: Path
) -> None:
    """A unit whose checkpoint id is not in the store fails on every attempt (its trace
    insert breaks the foreign key); the other units are written all the same."""
    store = open_store(sqlite_url)
    request = IngestRequest(logdir=run_dir, replay=(world,), batch_size=4)
    job_id, units = _planned(store, request)
    broken = replace(units[0], checkpoint_id=999_999)
    executor = DaskExecutor(address=cluster, retries=2, retry_pause_s=0.05)
    results = {
        (unit.checkpoint_id, unit.episodes): result
        for unit, result in executor.map(store, request, [broken, *units[1:]])
    }
    failed = results[(999_999, broken.episodes)]
    assert failed.written == 0 and len(failed.errors) == 1
    assert "unit failed 3 times on the cluster" in failed.errors[0]
    assert sum(r.written for r in results.values()) == 4 * (len(units) - 1)
    reasons = [e.reason for e in store.queries.list_job_errors(job_id=job_id).items]
    assert any("unit failed 3 times" in reason for reason in reasons), reasons


def test_a_worker_refuses_a_store_that_is_not_the_drivers(
    sqlite_url: str, tmp_path: Path, world: Path, run_dir: Path
) -> None:
    driver = open_store(sqlite_url)
    job_id, units = _planned(driver, IngestRequest(logdir=run_dir, replay=(world,)))
    job = driver.queries.get_job(job_id=job_id)
    ident = JobIdentity(job.id, job.created)
    assert preflight(sqlite_url, ident, units[0])
    elsewhere = f"sqlite:///{tmp_path / 'other.db'}"
    upgrade(elsewhere)
    with pytest.raises(BadInputError, match="not the driver's database"):
        preflight(elsewhere, ident, units[0])
    with pytest.raises(BadInputError, match="needs a shared PostgreSQL store"):
        preflight(f"sqlite:///{tmp_path / 'nowhere.db'}", ident, units[0])
    gone = replace(units[0], checkpoint=replace(units[0].checkpoint, path=tmp_path / "gone"))
    with pytest.raises(BadInputError, match="mount the log dirs"):
        preflight(sqlite_url, ident, gone)


@pytest.mark.slow
def test_cli_starts_a_local_cluster(
    sqlite_url: str, world: Path, run_dir: Path, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "BELIEFSCOPE_HOME": str(tmp_path / "home"),
        "BELIEFSCOPE_STORE": sqlite_url,
    }
    cmd = [sys.executable, "-m", "beliefscope.cli", "ingest", str(run_dir), "--replay", str(world)]
    done = subprocess.run(
        [*cmd, "--executor", "dask", "--workers", "2", "--batch-size", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "8 traces written, 0 already stored, 0 errors" in done.stdout
    assert_complete_once(sqlite_url, 8)
    bad = subprocess.run(
        [*cmd, "--address", "tcp://127.0.0.1:1"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "--address needs --executor dask" in bad.stderr
