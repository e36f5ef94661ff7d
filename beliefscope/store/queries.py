"""The read layer: the one way the API and the dashboard read the store.

Every method is keyword-only and returns frozen values from `beliefscope.values`; lists
are pages (`limit`/`offset` plus the total count). A missing id raises `NotFoundError` (404), a
bad argument `BadInputError` (400), an unreachable database `StoreUnavailableError` (503).
NaN is restored from each step's `nan_mask` on both backends, so SQLite (which stores NaN as
NULL) and PostgreSQL read through the same code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa

from beliefscope.errors import BadInputError, NotFoundError
from beliefscope.store.downsample import max_per_bucket, minmax_indices
from beliefscope.store.engine import Surface
from beliefscope.store.tables import (
    STEP_METRICS,
    Checkpoint,
    Episode,
    Job,
    JobError,
    Run,
    Trace,
    TraceArray,
    steps,
)
from beliefscope.values.jobs import JOB_STATES, JobErrorInfo, JobInfo
from beliefscope.values.page import MAX_LIMIT, Page
from beliefscope.values.traces import (
    CheckpointInfo,
    CheckpointSummary,
    EpisodeInfo,
    RunInfo,
    Series,
    Stats,
    TraceInfo,
    TraceSeries,
)
from beliefscope.values.traces import (
    TraceArray as TraceArrayValue,
)

SUMMARY_VARIANT, SUMMARY_POSTERIOR = "filter", "mode"
EpisodeOrder = Literal["key", "length", "return", "created"]

_checkpoint_count = sa.select(sa.func.count()).where(Checkpoint.run_id == Run.id).scalar_subquery()
_episode_count = sa.select(sa.func.count()).where(Episode.run_id == Run.id).scalar_subquery()
_run_trace_count = (
    sa.select(sa.func.count())
    .select_from(Trace)
    .join(Checkpoint, Trace.checkpoint_id == Checkpoint.id)
    .where(Checkpoint.run_id == Run.id)
    .scalar_subquery()
)
_latest_job_state = (
    sa.select(Job.state).where(Job.run_id == Run.id).order_by(Job.id.desc()).limit(1)
).scalar_subquery()
_RUNS = sa.select(
    Run.id,
    Run.name,
    Run.logdir,
    Run.format,
    Run.family,
    Run.replay_dirs,
    Run.created,
    _checkpoint_count.label("n_checkpoints"),
    _episode_count.label("n_episodes"),
    _run_trace_count.label("n_traces"),
    _latest_job_state.label("latest_job_state"),
)
_CHECKPOINTS = sa.select(
    *Checkpoint.__table__.columns,
    sa.select(sa.func.count())
    .where(Trace.checkpoint_id == Checkpoint.id)
    .scalar_subquery()
    .label("n_traces"),
)
_EPISODES = sa.select(
    *(c for c in Episode.__table__.columns if c.key != "return"),
    Episode.episode_return.label("episode_return"),
)
_TRACES = sa.select(
    *(c for c in Trace.__table__.columns if c.key != "probe"), Trace.variant.label("variant")
)
_JOBS = sa.select(
    *Job.__table__.columns,
    sa.select(sa.func.count()).where(JobError.job_id == Job.id).scalar_subquery().label("n_errors"),
)


class Queries(Surface):
    """Read access to runs, checkpoints, episodes, traces and jobs."""

    # -- runs ----------------------------------------------------------------------------

    def list_runs(self, *, limit: int = 100, offset: int = 0) -> Page[RunInfo]:
        """Runs by name, with their counts and the state of their newest job."""
        return self._page(_RUNS, Run.id, [Run.name], limit, offset, lambda r: RunInfo(**r))

    def get_run(self, *, run_id: int) -> RunInfo:
        return RunInfo(**self._one(_RUNS.where(Run.id == run_id), f"no run with id {run_id}"))

    def find_run(self, *, name: str) -> RunInfo:
        return RunInfo(**self._one(_RUNS.where(Run.name == name), f"no run named {name!r}"))

    # -- checkpoints and episodes --------------------------------------------------------

    def list_checkpoints(
        self, *, run_id: int, limit: int = 100, offset: int = 0
    ) -> Page[CheckpointInfo]:
        """A run's checkpoints by training step (unknown steps last), then by arrival."""
        query = _CHECKPOINTS.where(Checkpoint.run_id == run_id)
        order = [Checkpoint.step.is_(None), Checkpoint.step, Checkpoint.id]
        return self._page(query, Checkpoint.id, order, limit, offset, lambda r: CheckpointInfo(**r))

    def get_checkpoint(self, *, checkpoint_id: int) -> CheckpointInfo:
        query = _CHECKPOINTS.where(Checkpoint.id == checkpoint_id)
        return CheckpointInfo(**self._one(query, f"no checkpoint with id {checkpoint_id}"))

    def list_episodes(
        self,
        *,
        run_id: int,
        limit: int = 100,
        offset: int = 0,
        has_truth: bool | None = None,
        key_contains: str | None = None,
        min_length: int | None = None,
        order_by: EpisodeOrder = "key",
        descending: bool = False,
    ) -> Page[EpisodeInfo]:
        """A run's episodes, filtered (ground truth present, key substring, length)."""
        columns = {
            "key": Episode.key,
            "length": Episode.length,
            "return": Episode.episode_return,
            "created": Episode.created,
        }
        if order_by not in columns:
            raise BadInputError(
                f"cannot order episodes by {order_by!r}; use one of {list(columns)}"
            )
        query = _EPISODES.where(Episode.run_id == run_id)
        if has_truth is not None:
            query = query.where(Episode.has_truth == has_truth)
        if key_contains:
            query = query.where(Episode.key.contains(key_contains, autoescape=True))
        if min_length is not None:
            query = query.where(Episode.length >= min_length)
        column = columns[order_by]
        order = [column.is_(None), column.desc() if descending else column, Episode.id]
        return self._page(query, Episode.id, order, limit, offset, lambda r: EpisodeInfo(**r))

    def get_episode(self, *, episode_id: int) -> EpisodeInfo:
        query = _EPISODES.where(Episode.id == episode_id)
        return EpisodeInfo(**self._one(query, f"no episode with id {episode_id}"))

    # -- traces --------------------------------------------------------------------------

    def list_traces(
        self,
        *,
        checkpoint_id: int | None = None,
        episode_id: int | None = None,
        variant: str | None = None,
        posterior: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[TraceInfo]:
        """Traces matching every given filter; for one (checkpoint, episode) these are the
        variants available to show."""
        query = _TRACES
        for column, value in (
            (Trace.checkpoint_id, checkpoint_id),
            (Trace.episode_id, episode_id),
            (Trace.variant, variant),
            (Trace.posterior, posterior),
        ):
            if value is not None:
                query = query.where(column == value)
        order = [Trace.checkpoint_id, Trace.episode_id, Trace.variant, Trace.posterior]
        with self._store.connect() as conn:
            page = self._page(query, Trace.id, order, limit, offset, dict, conn=conn)
            arrays = self._array_names(conn, [row["id"] for row in page.items])
        items = tuple(_trace_info(row, arrays.get(row["id"], ())) for row in page.items)
        return Page(items, page.total, page.limit, page.offset)

    def get_trace(self, *, trace_id: int) -> TraceInfo:
        return self._trace(Trace.id == trace_id, f"no trace with id {trace_id}")

    def find_trace(
        self,
        *,
        checkpoint_id: int,
        episode_id: int,
        variant: str = "filter",
        posterior: str = "mode",
    ) -> TraceInfo:
        where = sa.and_(
            Trace.checkpoint_id == checkpoint_id,
            Trace.episode_id == episode_id,
            Trace.variant == variant,
            Trace.posterior == posterior,
        )
        message = (
            f"no {variant!r} trace ({posterior}) of checkpoint {checkpoint_id} "
            f"on episode {episode_id}"
        )
        return self._trace(where, message)

    def read_trace(
        self,
        *,
        trace_id: int,
        metrics: Sequence[str] | None = None,
        t0: int | None = None,
        t1: int | None = None,
        max_points: int | None = None,
    ) -> TraceSeries:
        """Metric columns of steps t0..t1 (inclusive; default the whole trace). With
        `max_points`, each series keeps at most that many points, chosen by
        `downsample.minmax_indices` (spikes, NaN and both ends survive)."""
        wanted = _check_metrics(metrics)
        with self._store.connect() as conn:
            mask = conn.execute(
                sa.select(Trace.metrics_mask, Trace.length).where(Trace.id == trace_id)
            ).first()
            if mask is None:
                raise NotFoundError(f"no trace with id {trace_id}")
            present = [m for m in wanted if mask.metrics_mask >> STEP_METRICS.index(m) & 1]
            query = sa.select(steps.c.t, steps.c.nan_mask, *(steps.c[m] for m in present)).where(
                steps.c.trace_id == trace_id
            )
            query = _window(query, steps.c.t, t0, t1).order_by(steps.c.t)
            rows = conn.execute(query).all()
        table = _float_table(rows, 2 + len(present))  # (n, 2 + M)
        t = table[:, 0].astype(np.int64)
        nan_mask = table[:, 1].astype(np.int64)
        series: dict[str, Series] = {}
        for i, name in enumerate(present):
            values = table[:, 2 + i]
            values[(nan_mask >> STEP_METRICS.index(name) & 1).astype(bool)] = np.nan
            if max_points is not None:
                keep = minmax_indices(t, values, max_points)
                series[name] = Series(t[keep], values[keep])
            else:
                series[name] = Series(t, values)
        downsampled = max_points is not None and len(t) > max_points
        absent = tuple(m for m in wanted if m not in present)
        return TraceSeries(trace_id, mask.length, series, absent, downsampled)

    def read_array(
        self,
        *,
        trace_id: int,
        name: str,
        t0: int | None = None,
        t1: int | None = None,
        max_points: int | None = None,
    ) -> TraceArrayValue:
        """A stored per-step array (e.g. `kl_groups` for the heat map), rows t0..t1; with
        `max_points`, at most that many rows, each the max over its time bucket."""
        with self._store.connect() as conn:
            row = conn.execute(
                sa.select(TraceArray.dtype, TraceArray.shape, TraceArray.data).where(
                    TraceArray.trace_id == trace_id, TraceArray.name == name
                )
            ).first()
        if row is None:
            self.get_trace(trace_id=trace_id)  # 404 for the trace itself first
            raise NotFoundError(f"trace {trace_id} has no array {name!r}")
        values = np.frombuffer(row.data, dtype=np.dtype(row.dtype)).reshape(row.shape)  # (T, ...)
        start = 0 if t0 is None else max(0, t0)
        stop = len(values) if t1 is None else min(len(values), t1 + 1)
        t = np.arange(start, max(start, stop), dtype=np.int64)
        values = values[start : start + len(t)]
        downsampled = max_points is not None and len(t) > max_points
        if max_points is not None:
            t, values = max_per_bucket(t, values, max_points)
        return TraceArrayValue(trace_id, name, t, values, downsampled)

    # -- summaries -----------------------------------------------------------------------

    def checkpoint_summary(self, *, checkpoint_id: int) -> CheckpointSummary:
        """KL and correction statistics over every step of the checkpoint's filter traces
        (posterior mode); non-finite steps are counted, not averaged."""
        info = self.get_checkpoint(checkpoint_id=checkpoint_id)
        query = (
            sa.select(Trace.metrics_mask, steps.c.nan_mask, steps.c.kl, steps.c.correction)
            .join(steps, steps.c.trace_id == Trace.id)
            .where(
                Trace.checkpoint_id == checkpoint_id,
                Trace.variant == SUMMARY_VARIANT,
                Trace.posterior == SUMMARY_POSTERIOR,
            )
        )
        count = sa.select(sa.func.count()).where(
            Trace.checkpoint_id == checkpoint_id,
            Trace.variant == SUMMARY_VARIANT,
            Trace.posterior == SUMMARY_POSTERIOR,
        )
        with self._store.connect() as conn:
            n_traces = conn.execute(count).scalar_one()
            rows = conn.execute(query).all()
        table = _float_table(rows, 4)  # (n, 4)
        trace_mask = table[:, 0].astype(np.int64)
        stats = {}
        for column, name in ((2, "kl"), (3, "correction")):
            bit = STEP_METRICS.index(name)
            stats[name] = _stats(table[(trace_mask >> bit & 1).astype(bool), column])
        return CheckpointSummary(
            checkpoint_id, info.step, n_traces, stats["kl"], stats["correction"]
        )

    def checkpoint_summaries(self, *, run_id: int) -> tuple[CheckpointSummary, ...]:
        """`checkpoint_summary` of each of the run's checkpoints, by training step."""
        self.get_run(run_id=run_id)
        ids = [c.id for c in self.list_checkpoints(run_id=run_id, limit=MAX_LIMIT).items]
        return tuple(self.checkpoint_summary(checkpoint_id=i) for i in ids)

    # -- jobs ----------------------------------------------------------------------------

    def list_jobs(
        self,
        *,
        run_id: int | None = None,
        state: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[JobInfo]:
        """Jobs, newest first."""
        query = _JOBS
        if run_id is not None:
            query = query.where(Job.run_id == run_id)
        if state is not None:
            if state not in JOB_STATES:
                raise BadInputError(f"unknown job state {state!r}; use one of {list(JOB_STATES)}")
            query = query.where(Job.state == state)
        return self._page(query, Job.id, [Job.id.desc()], limit, offset, lambda r: JobInfo(**r))

    def get_job(self, *, job_id: int, errors_limit: int = 100) -> JobInfo:
        """A job with its first `errors_limit` unit errors (`list_job_errors` pages on)."""
        row = self._one(_JOBS.where(Job.id == job_id), f"no job with id {job_id}")
        errors = self.list_job_errors(job_id=job_id, limit=errors_limit)
        return JobInfo(**row, errors=errors.items)

    def list_job_errors(
        self, *, job_id: int, limit: int = 100, offset: int = 0
    ) -> Page[JobErrorInfo]:
        query = sa.select(JobError).where(JobError.job_id == job_id)
        return self._page(
            query, JobError.id, [JobError.id], limit, offset, lambda r: JobErrorInfo(**r)
        )

    # -- helpers -------------------------------------------------------------------------

    def _page(
        self,
        query: sa.Select[Any],
        id_column: Any,
        order: Iterable[Any],
        limit: int,
        offset: int,
        make: Any,
        conn: sa.Connection | None = None,
    ) -> Page[Any]:
        if not 1 <= limit <= MAX_LIMIT:
            raise BadInputError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        if offset < 0:
            raise BadInputError(f"offset must be >= 0, got {offset}")
        count = sa.select(sa.func.count()).select_from(
            query.with_only_columns(id_column).order_by(None).subquery()
        )
        paged = query.order_by(*order).limit(limit).offset(offset)
        if conn is None:
            with self._store.connect() as conn:
                total = conn.execute(count).scalar_one()
                rows = conn.execute(paged).mappings().all()
        else:
            total = conn.execute(count).scalar_one()
            rows = conn.execute(paged).mappings().all()
        return Page(tuple(make(dict(r)) for r in rows), int(total), limit, offset)

    def _one(self, query: sa.Select[Any], missing: str) -> dict[str, Any]:
        with self._store.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            raise NotFoundError(missing)
        return dict(row)

    def _trace(self, where: Any, missing: str) -> TraceInfo:
        with self._store.connect() as conn:
            row = conn.execute(_TRACES.where(where)).mappings().first()
            if row is None:
                raise NotFoundError(missing)
            names = self._array_names(conn, [row["id"]])
        return _trace_info(dict(row), names.get(row["id"], ()))

    @staticmethod
    def _array_names(conn: sa.Connection, trace_ids: list[int]) -> dict[int, tuple[str, ...]]:
        if not trace_ids:
            return {}
        rows = conn.execute(
            sa.select(TraceArray.trace_id, TraceArray.name)
            .where(TraceArray.trace_id.in_(trace_ids))
            .order_by(TraceArray.trace_id, TraceArray.name)
        )
        names: dict[int, tuple[str, ...]] = {}
        for trace_id, name in rows:
            names[trace_id] = (*names.get(trace_id, ()), name)
        return names


def _trace_info(row: dict[str, Any], arrays: tuple[str, ...]) -> TraceInfo:
    mask = row.pop("metrics_mask")
    metrics = tuple(m for i, m in enumerate(STEP_METRICS) if mask >> i & 1)
    return TraceInfo(**row, metrics=metrics, arrays=arrays)


def _check_metrics(metrics: Sequence[str] | None) -> list[str]:
    if metrics is None:
        return list(STEP_METRICS)
    unknown = [m for m in metrics if m not in STEP_METRICS]
    if unknown:
        raise BadInputError(f"unknown metrics {unknown}; known: {list(STEP_METRICS)}")
    return list(dict.fromkeys(metrics))


def _window(query: sa.Select[Any], t: Any, t0: int | None, t1: int | None) -> sa.Select[Any]:
    if t0 is not None:
        query = query.where(t >= t0)
    if t1 is not None:
        query = query.where(t <= t1)
    return query


def _float_table(rows: Sequence[sa.Row[Any]], width: int) -> np.ndarray:
    """Rows as a (n, width) float64 array, NULL as NaN. Plain tuples first: numpy probing
    SQLAlchemy rows for array interfaces costs 10x the fetch."""
    return np.array([tuple(row) for row in rows], dtype=np.float64).reshape(len(rows), width)


def _stats(values: np.ndarray) -> Stats:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return Stats(None, None, None, 0, len(values))
    return Stats(
        mean=float(finite.mean()),
        median=float(np.median(finite)),
        p95=float(np.percentile(finite, 95)),
        n_finite=len(finite),
        n_nonfinite=len(values) - len(finite),
    )
