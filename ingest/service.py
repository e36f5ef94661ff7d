"""The ingest service: checkpoints x episodes x trace variants -> traces in the store.

One way in for the CLI, the API, `watch` and the demo: `Ingestor.submit` registers the run (its
log dir, checkpoint format and family, replay dirs) and queues its job, recording who started
it; `Ingestor.run` then plans the units (`planner`), has an executor compute them (`executors`:
in this process, or fanned out over a cluster) and keeps the job's state. The unit of storage is
(checkpoint, episode, trace variant), written in one transaction, so a re-run skips what is done
and a killed run leaves no partial trace. Memory is bounded by the batch, not by the number of
episodes. Whatever fails (a corrupt episode, a checkpoint that does not load, frames the model
can't take) is recorded on the job with its file and reason, and the rest goes on; each
checkpoint is flagged by the review rules as soon as its traces are in. A log dir with nothing
to ingest is refused before anything is stored; a job that could ingest nothing ends failed.
"""

from __future__ import annotations

import contextlib
import socket
from collections import Counter

from beliefscope.errors import BeliefscopeError, StoreFullError
from beliefscope.review.service import ReviewService
from beliefscope.store.engine import Store
from beliefscope.values.jobs import JobInfo
from ingest.executors import Executor, LocalExecutor
from ingest.planner import Found, Planner, SnapshotCache
from ingest.request import IngestReport, IngestRequest, ProgressSink, Silent
from ingest.units import UnitResult, WorkUnit


class Ingestor:
    """One request against one store (and a watcher's snapshot cache, and the survey of the
    log dir when the caller took it before opening the store)."""

    def __init__(
        self,
        store: Store,
        request: IngestRequest,
        cache: SnapshotCache | None = None,
        found: Found | None = None,
    ) -> None:
        self.store = store
        self.request = request
        self.planner = Planner(store, request, cache, found)

    def pending(self) -> int:
        """Units not stored yet (0 when a watcher has nothing to do); loads no model."""
        return self.planner.pending()

    def submit(self, *, started_by: str) -> JobInfo:
        """Register the run and queue its ingest job (run it with `run`, here or elsewhere);
        `NothingToIngestError`, with nothing stored, for a log dir without checkpoints or
        episodes."""
        req = self.request
        run_id = self.planner.ensure_run()
        job_id = self.store.writer.create_job(
            "ingest",
            run_id=run_id,
            args={
                "logdir": str(req.logdir),
                "variants": list(req.variants),
                "posterior": req.posterior_label,
                "metrics": req.options.metrics,
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
        """Plan the units of a submitted job, run them (locally, or on `executor`), flag each
        checkpoint as soon as its last unit is in, and keep the job's state: failed, with the
        first error, when nothing could be ingested."""
        writer = self.store.writer
        report = IngestReport(job_id)
        progress = progress or Silent()
        try:
            run_id = self.planner.ensure_run()  # refuses a log dir emptied since the submit
            writer.start_job(job_id)
            units = self.planner.plan(run_id, report, progress)
            flagger = _Flagger(self.store, run_id, units)
            for unit, result in (executor or LocalExecutor()).map(self.store, self.request, units):
                report.written += result.written
                report.skipped += result.skipped
                report.errors += result.errors
                progress.advance(len(unit.episodes), unit.variant)
                finished = flagger.unit_done(unit, result)
                writer.update_job(
                    job_id, add_done=len(unit.episodes), add_checkpoints_done=int(finished)
                )
        except BaseException as err:
            why = str(err) if isinstance(err, BeliefscopeError) else f"{type(err).__name__}: {err}"
            # with no room to say so in the store, the error itself still reaches the caller
            with contextlib.suppress(StoreFullError):
                writer.finish_job(job_id, failed=True, message=why)
            raise
        message = (
            f"{report.written} traces written, {report.skipped} already stored, "
            f"{len(report.errors)} errors"
        )
        if report.failed:
            message = f"nothing ingested: {report.errors[0]}"
        writer.finish_job(job_id, failed=report.failed, message=message)
        return report


class _Flagger:
    """Applies the review rules to each checkpoint once all of its units are in, so its
    flags appear with its traces, not after the whole run. Robust thresholds are computed per
    checkpoint, so a checkpoint flagged complete gets the flags a run-wide apply would give."""

    def __init__(self, store: Store, run_id: int, units: list[WorkUnit]) -> None:
        self.store, self.run_id = store, run_id
        self.left = Counter(unit.checkpoint_id for unit in units)
        self.wrote: set[int] = set()
        self.reviews: ReviewService | None = None

    def unit_done(self, unit: WorkUnit, result: UnitResult) -> bool:
        """Count a finished unit; True when it was its checkpoint's last."""
        if result.written:
            self.wrote.add(unit.checkpoint_id)
        self.left[unit.checkpoint_id] -= 1
        if self.left[unit.checkpoint_id]:
            return False
        if unit.checkpoint_id in self.wrote:
            if self.reviews is None:
                self.reviews = ReviewService(self.store)
                self.reviews.ensure_default_rules()
            self.reviews.apply_rules(
                who="ingest", run_id=self.run_id, checkpoint_ids=[unit.checkpoint_id]
            )
        return True
