"""Ingest jobs started from the API: a registered data root, ingested in a background thread.

The job row is created before the request returns, so the client can poll it at once; the
ingest service then records progress, per-unit errors and the final state on that row. One
worker thread runs jobs in order: ingest saturates the cores, two at once would only be slower.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from beliefscope.config import Settings
from beliefscope.errors import NotFoundError
from beliefscope.store.engine import Store
from server.paths import contained

log = logging.getLogger("beliefscope.server")


class IngestJobs:
    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")
        self.futures: dict[int, Future[object]] = {}

    def resolve_root(self, root: str) -> Path:
        """The real directory of `root` when it is (inside) a configured data root."""
        if not self._settings.data_roots:
            raise NotFoundError("no data roots are registered (set BELIEFSCOPE_DATA_ROOTS)")
        path = contained(root, self._settings.data_roots)
        if not path.is_dir():
            raise NotFoundError("no such directory in the registered data roots")
        return path

    def start(self, root: str, *, run_name: str | None, who: str) -> int:
        """Queue an ingest of `root`; returns the job id."""
        from ingest.service import Ingestor, IngestRequest

        logdir = self.resolve_root(root)
        request = IngestRequest(logdir=logdir, run_name=run_name)
        writer = self._store.writer
        run_id = writer.ensure_run(request.name, logdir=str(logdir))
        job_id = writer.create_job(
            "ingest",
            run_id=run_id,
            args={"logdir": str(logdir), "probes": list(request.probes), "started_by": who},
        )

        def work() -> object:
            try:
                return Ingestor(self._store, request).run(job_id=job_id)
            except Exception:  # recorded on the job by the service; keep the worker alive
                log.exception("ingest job %d failed", job_id)
                return None

        self.futures[job_id] = self._pool.submit(work)
        return job_id

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
