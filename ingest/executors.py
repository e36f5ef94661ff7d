"""Where work units run: `LocalExecutor` in this process, `DaskExecutor` on a Dask cluster.

Both run the same `units.UnitRunner`; results may come back in any order, and since each trace
commits on its own and duplicates are skipped by the unique key, re-running a unit is safe.

Dask distributed rather than Ray: ingest units are plain Python calls on CPU or one GPU each,
and Dask runs them with a fraction of Ray's footprint (a 2-worker local cluster starts in ~5 s
at ~0.8 GB RSS here, against ~1.6 GB for Ray), ships as a pure-Python wheel, needs no token
setup, and a lab's existing Dask scheduler (or `dask worker` on each GPU box) is enough.

Dask workers open the store themselves from the driver's URL and keep one `UnitRunner` per
worker thread (one per process with `--nthreads 1`, the recommended setting), so a checkpoint's
model stays loaded across its units. A unit that fails is retried a bounded number of times
(after a growing pause, so a database restart can pass) and then recorded as a job error; the
driver reports each result as it comes back. Workers check, before any unit runs, that they see
the driver's database (not a same-named SQLite file of their own) and the checkpoint and episode
files.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
import torch

from beliefscope.errors import BadInputError, BeliefscopeError, NotFoundError
from beliefscope.store.engine import Store, open_store
from ingest.request import IngestRequest
from ingest.units import UnitResult, UnitRunner, WorkUnit, default_threads


class Executor(Protocol):
    """Where work units run. Results may come back in any order."""

    def map(
        self, store: Store, request: IngestRequest, units: Sequence[WorkUnit]
    ) -> Iterator[tuple[WorkUnit, UnitResult]]: ...


class LocalExecutor:
    """In this process, in plan order (one model load per checkpoint), reading the next
    unit's files on a second thread while the current one computes."""

    def map(
        self, store: Store, request: IngestRequest, units: Sequence[WorkUnit]
    ) -> Iterator[tuple[WorkUnit, UnitResult]]:
        runner = UnitRunner(store, request)
        with ThreadPoolExecutor(1, thread_name_prefix="ingest-read") as reader:
            ahead = reader.submit(UnitRunner.read, units[0]) if units else None
            for i, unit in enumerate(units):
                assert ahead is not None
                episodes = ahead.result()
                if i + 1 < len(units):
                    ahead = reader.submit(UnitRunner.read, units[i + 1])
                yield unit, runner(unit, episodes)


RETRIES = 2
"""Extra attempts for a unit whose task failed (worker died, store unreachable, a bug)."""
RETRY_PAUSE_S = 2.0
"""Pause before attempt n+1 is n times this: long enough for a database to come back."""


class DaskExecutor:
    """Runs units on a Dask cluster: the one at `address`, or a local one of `workers`."""

    def __init__(
        self,
        *,
        address: str | None = None,
        workers: int = 2,
        threads: int = 0,
        retries: int = RETRIES,
        retry_pause_s: float = RETRY_PAUSE_S,
    ) -> None:
        if workers < 1:
            raise BadInputError(f"--workers must be at least 1, got {workers}")
        self.address, self.workers = address, workers
        self.threads = threads
        """Torch threads per worker; 0: cores / workers locally, the worker's default remotely."""
        self.retries, self.retry_pause_s = retries, retry_pause_s

    def map(
        self, store: Store, request: IngestRequest, units: Sequence[WorkUnit]
    ) -> Iterator[tuple[WorkUnit, UnitResult]]:
        if not units:
            return
        distributed = _import_dask()
        url = store.engine.url.render_as_string(hide_password=False)
        job = store.queries.get_job(job_id=units[0].job_id, errors_limit=1)
        ident = JobIdentity(job.id, job.created)
        with self._client(distributed) as client:
            threads = self.threads or self._local_threads()
            _preflight_all(client, url, ident, units[0])
            attempts: dict[Any, tuple[WorkUnit, int]] = {}

            def submit(unit: WorkUnit, attempt: int) -> Any:
                future = client.submit(
                    run_unit,
                    url,
                    request,
                    ident,
                    threads,
                    unit,
                    (attempt - 1) * self.retry_pause_s,
                    pure=False,
                )
                attempts[future] = (unit, attempt)
                return future

            pending = distributed.as_completed([submit(unit, 1) for unit in units])
            for future in pending:
                unit, attempt = attempts.pop(future)
                try:
                    result = future.result()
                except Exception as err:  # noqa: BLE001 - any task failure is retried, then reported
                    if attempt <= self.retries:
                        pending.add(submit(unit, attempt + 1))
                        continue
                    yield unit, _failed(store, unit, attempt, err)
                    continue
                finally:
                    future.release()
                yield unit, result

    def _local_threads(self) -> int:
        if self.address:
            return 0  # the worker's own default (BELIEFSCOPE_TORCH_THREADS on its machine)
        return max(1, (os.cpu_count() or 2) // self.workers)

    def _client(self, distributed: Any) -> Any:
        """A client of the cluster at `address`, or of a local cluster closed with it."""
        try:
            if self.address:
                return distributed.Client(self.address, timeout="30s")
            cluster = distributed.LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
        except OSError as err:
            raise BadInputError(
                f"cannot reach the Dask scheduler at {self.address}: {err}"
                if self.address
                else f"cannot start a local Dask cluster: {err}"
            ) from None
        return _ClosingClient(distributed.Client(cluster), cluster)


class _ClosingClient:
    """Closes a local cluster together with its client."""

    def __init__(self, client: Any, cluster: Any) -> None:
        self.client, self.cluster = client, cluster

    def __enter__(self) -> Any:
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.cluster.close()


@dataclass(frozen=True)
class JobIdentity:
    """The job a unit belongs to, as the driver sees it: a worker that finds the same job id
    with the same creation time in its store is writing to the driver's database."""

    job_id: int
    created: datetime


def _import_dask() -> Any:
    try:
        import distributed
    except ImportError:
        raise BadInputError(
            "--executor dask needs Dask distributed: pip install 'beliefscope[cluster]'"
        ) from None
    return distributed


WORKER_WAIT_S = 120
"""How long the driver waits for a first worker to join the scheduler."""


def _preflight_all(client: Any, url: str, ident: JobIdentity, unit: WorkUnit) -> None:
    """Fail fast, with the worker's host and the reason, if a worker can't do the work."""
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        raise BadInputError(f"no Dask worker joined the scheduler in {WORKER_WAIT_S} s") from None
    answers = client.run(preflight, url, ident, unit, on_error="return")
    for worker, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):
            raise BadInputError(f"Dask worker {worker}: {answer}") from None


def preflight(url: str, ident: JobIdentity, unit: WorkUnit) -> str:
    """Runs on a worker: the store is the driver's, and the unit's files are readable here."""
    host = socket.gethostname()
    for path in (unit.checkpoint.path, *(ep.path for ep in unit.episodes[:1])):
        if not os.access(path, os.R_OK):
            raise BadInputError(
                f"cannot read {path} on {host}: mount the log dirs and BELIEFSCOPE_HOME "
                "(checkpoint snapshots) at the same paths on every worker"
            )
    store = _open_worker_store(url, host)
    try:
        _check_job(store, ident, host)
    finally:
        store.close()
    return host


def _open_worker_store(url: str, host: str) -> Store:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        raise BadInputError(
            f"the SQLite store {parsed.database} is not on {host}: a cluster across machines "
            "needs a shared PostgreSQL store (--store postgresql+psycopg://...)"
        )
    return open_store(url)


def _check_job(store: Store, ident: JobIdentity, host: str) -> None:
    try:
        job = store.queries.get_job(job_id=ident.job_id, errors_limit=1)
    except NotFoundError:
        job = None
    if job is None or job.created != ident.created:
        raise BadInputError(
            f"the store {store.url} seen from {host} is not the driver's database "
            f"(job {ident.job_id} is missing or different there)"
        )


_local = threading.local()


def run_unit(
    url: str,
    request: IngestRequest,
    ident: JobIdentity,
    threads: int,
    unit: WorkUnit,
    pause_s: float = 0.0,
) -> UnitResult:
    """Runs on a worker: one unit through this thread's runner (created on first use)."""
    if pause_s > 0:
        threading.Event().wait(pause_s)
    key = (url, request, ident)
    cached: tuple[Any, UnitRunner] | None = getattr(_local, "runner", None)
    if cached is None or cached[0] != key:
        if cached is not None:
            cached[1].store.close()
            _local.runner = None
        torch.set_num_threads(threads or default_threads())
        host = socket.gethostname()
        store = _open_worker_store(url, host)
        try:
            _check_job(store, ident, host)
        except BaseException:
            store.close()
            raise
        _local.runner = (key, UnitRunner(store, request))
    return _local.runner[1](unit)


def _failed(store: Store, unit: WorkUnit, attempts: int, err: BaseException) -> UnitResult:
    """A unit that failed every attempt: recorded on the job with its first episode's file."""
    what = err if isinstance(err, BeliefscopeError) else f"{type(err).__name__}: {err}"
    reason = f"unit failed {attempts} times on the cluster: {what}"
    where = unit.episodes[0].path if unit.episodes else unit.checkpoint.path
    store.writer.record_job_error(
        unit.job_id,
        unit=f"{unit.variant} x {len(unit.episodes)} episodes of checkpoint {unit.checkpoint_id}",
        file=str(where),
        reason=reason,
    )
    return UnitResult(errors=[f"{where}: {reason}"])
