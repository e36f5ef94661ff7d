"""The ingest service: checkpoints x episodes x trace variants -> traces in the store.

One way in for the CLI, the API, `watch` and the demo: `Ingestor.submit` registers the run (its
log dir, checkpoint format and family, replay dirs) and queues its job, recording who started
it; `Ingestor.run` then plans the units (`planner`), has an executor compute them (`executors`:
in this process, or fanned out over a cluster) and keeps the job's state. The unit of storage is
(checkpoint, episode, trace variant), written in one transaction, so a re-run skips what is done
and a killed run leaves no partial trace. Memory is bounded by the batch, not by the number of
episodes. Whatever fails (a corrupt episode, a checkpoint that does not load, frames the model
can't take) is recorded on the job with its file and reason, and the rest goes on; what was
written is flagged by the review rules before the job finishes.
"""

from __future__ import annotations

import socket

from beliefscope.review.service import ReviewService
from beliefscope.store.engine import Store
from beliefscope.values.jobs import JobInfo
from ingest.executors import Executor, LocalExecutor
from ingest.planner import Planner, SnapshotCache
from ingest.request import IngestReport, IngestRequest, ProgressSink, Silent


class Ingestor:
    """One request against one store (and a watcher's snapshot cache)."""

    def __init__(
        self, store: Store, request: IngestRequest, cache: SnapshotCache | None = None
    ) -> None:
        self.store = store
        self.request = request
        self.planner = Planner(store, request, cache)

    def pending(self) -> int:
        """Units not stored yet (0 when a watcher has nothing to do); loads no model."""
        return self.planner.pending()

    def submit(self, *, started_by: str) -> JobInfo:
        """Register the run and queue its ingest job (run it with `run`, here or elsewhere)."""
        req = self.request
        run_id = self.planner.ensure_run()
        job_id = self.store.writer.create_job(
            "ingest",
            run_id=run_id,
            args={
                "logdir": str(req.logdir),
                "variants": list(req.variants),
                "posterior": req.posterior_label,
                "started_by": started_by,
                "host": socket.gethostname(),
            },
        )
        return self.store.queries.get_job(job_id=job_id)

    def run(
        self,
        job_id: int,
        progress: ProgressSink | None = None,
        executor: Executor | None = None,
    ) -> IngestReport:
        """Plan the units of a submitted job, run them (locally, or on `executor`), flag what
        was written, and keep the job's state."""
        writer = self.store.writer
        run_id = self.planner.ensure_run()
        writer.start_job(job_id)
        report = IngestReport(job_id)
        progress = progress or Silent()
        try:
            units = self.planner.plan(run_id, report, progress)
            for unit, result in (executor or LocalExecutor()).map(self.store, self.request, units):
                report.written += result.written
                report.skipped += result.skipped
                report.errors += result.errors
                progress.advance(len(unit.episodes), unit.variant)
                writer.update_job(job_id, add_done=len(unit.episodes))
            if report.written:  # new traces get their flags now, not at the next rule change
                reviews = ReviewService(self.store)
                reviews.ensure_default_rules()
                reviews.apply_rules(who="ingest", run_id=run_id)
        except BaseException as err:
            writer.finish_job(job_id, failed=True, message=f"{type(err).__name__}: {err}")
            raise
        message = (
            f"{report.written} traces written, {report.skipped} already stored, "
            f"{len(report.errors)} errors"
        )
        writer.finish_job(job_id, message=message)
        return report
