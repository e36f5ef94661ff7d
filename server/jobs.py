"""Ingest jobs started from the API: a registered data root, ingested in a worker process.

The job row is created before the request returns, so the client can poll it at once; the
ingest service then records progress, per-unit errors and the final state on that row. Each
job runs in a spawned process (model math holds the GIL for long stretches and would stall
request threads), one at a time: ingest saturates the cores, two at once would be slower.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING

from beliefscope.config import Settings
from beliefscope.errors import NotFoundError
from beliefscope.store.engine import Store
from server.paths import contained

if TYPE_CHECKING:
    from ingest.request import IngestRequest

log = logging.getLogger("beliefscope.server")


class IngestJobs:
    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._queue: queue.Queue[tuple[Settings, IngestRequest, int] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._current: tuple[int, BaseProcess] | None = None
        self._lock = threading.Lock()

    def resolve_root(self, root: str) -> Path:
        """The real directory of `root` when it is (inside) a configured data root."""
        if not self._settings.data_roots:
            raise NotFoundError("no data roots are registered (set BELIEFSCOPE_DATA_ROOTS)")
        path = contained(root, self._settings.data_roots)
        if not path.is_dir():
            raise NotFoundError("no such directory in the registered data roots")
        return path

    def start(self, root: str, *, run_name: str | None, who: str) -> int:
        """Submit an ingest of `root` (run and job registered now, so the client can poll the
        job at once) and queue it for the worker; returns the job id."""
        from ingest.request import IngestRequest
        from ingest.service import Ingestor

        logdir = self.resolve_root(root)
        # snapshots under the server's home, so its overlays can read them back; every file
        # read (through any symlink under the root) must lie in the data roots too
        request = IngestRequest(
            logdir=logdir,
            run_name=run_name,
            snapshots=self._settings.home / "snapshots",
            roots=tuple(self._settings.data_roots),
        )
        job_id = Ingestor(self._store, request).submit(started_by=who).id
        details = {"root": str(logdir), "run": run_name}
        self._store.activity.record(
            who=who, action="job.start", target=f"job:{job_id}", details=details
        )
        url = self._store.engine.url.render_as_string(hide_password=False)
        self._queue.put((self._settings.model_copy(update={"store": url}), request, job_id))
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="ingest-jobs", daemon=True)
                self._thread.start()
        return job_id

    def _serve(self) -> None:
        spawn = multiprocessing.get_context("spawn")  # no forked copies of server threads
        while (item := self._queue.get()) is not None:
            proc = spawn.Process(target=_ingest, args=item, name=f"ingest-job-{item[2]}")
            with self._lock:
                self._current = (item[2], proc)
            proc.start()
            proc.join()
            with self._lock:
                self._current = None

    def shutdown(self) -> None:
        """Stop the running job's process; it and any queued job are marked failed."""
        stopped = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                stopped.append(item[2])
        self._queue.put(None)
        with self._lock:
            current = self._current
        if current is not None:
            current[1].terminate()
            current[1].join(timeout=10)
            stopped.append(current[0])
        for job_id in stopped:
            self._store.writer.finish_job(job_id, failed=True, message="the server stopped")


def _ingest(settings: Settings, request: IngestRequest, job_id: int) -> None:
    """In the worker process: run one ingest job on its own store connection."""
    import torch

    from beliefscope.store.engine import open_store
    from ingest.service import Ingestor
    from ingest.units import default_threads

    torch.set_num_threads(settings.torch_threads or default_threads())
    store = open_store(settings.store)
    try:
        Ingestor(store, request).run(job_id)
    except Exception as err:  # the service recorded it on the job already
        log.error("ingest job %d failed: %s", job_id, err)
    finally:
        store.close()
