"""Ingest jobs started from the API: a registered data root, ingested in a worker process.

The job row is created before the request returns, so the client can poll it at once; the
ingest service then records progress, per-unit errors and the final state on that row. The
ingest runs in a separate process (model math holds the GIL for long stretches and would stall
request threads), one job at a time: ingest saturates the cores, two at once would be slower.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from beliefscope.config import Settings
from beliefscope.errors import NotFoundError
from beliefscope.store.engine import Store
from server.paths import contained

if TYPE_CHECKING:
    from ingest.service import IngestRequest

log = logging.getLogger("beliefscope.server")


class IngestJobs:
    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._pool: ProcessPoolExecutor | None = None
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
        from ingest.service import IngestRequest

        logdir = self.resolve_root(root)
        request = IngestRequest(logdir=logdir, run_name=run_name)
        writer = self._store.writer
        run_id = writer.ensure_run(request.name, logdir=str(logdir))
        job_id = writer.create_job(
            "ingest",
            run_id=run_id,
            args={"logdir": str(logdir), "probes": list(request.probes), "started_by": who},
        )

        if self._pool is None:
            spawn = multiprocessing.get_context("spawn")  # no forked copies of server threads
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=spawn)
        url = self._store.engine.url.render_as_string(hide_password=False)
        settings = self._settings.model_copy(update={"store": url})
        self.futures[job_id] = self._pool.submit(_ingest, settings, request, job_id)
        return job_id

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _ingest(settings: Settings, request: IngestRequest, job_id: int) -> str:
    """In the worker process: run one ingest job on its own store connection."""
    import torch

    from beliefscope.config import get_settings
    from beliefscope.store.engine import open_store
    from ingest.service import Ingestor, default_threads

    get_settings.cache_clear()
    os.environ["BELIEFSCOPE_HOME"] = str(settings.home)  # snapshots under the server's home
    torch.set_num_threads(settings.torch_threads or default_threads())
    store = open_store(settings.store)
    try:
        report = Ingestor(store, request).run(job_id=job_id)
        return f"{report.written} written, {len(report.errors)} errors"
    except Exception as err:  # the service recorded it on the job already
        log.error("ingest job %d failed: %s", job_id, err)
        return f"failed: {err}"
    finally:
        store.close()
