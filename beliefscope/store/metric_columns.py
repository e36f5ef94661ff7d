"""One metric of many traces in bulk (`store.reviews`): what re-flagging, thresholds, scores and
findings read, from `metric_columns` blobs that cache the wide step rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa

from beliefscope.errors import BadInputError
from beliefscope.store.engine import Surface
from beliefscope.store.review_tables import MetricColumn
from beliefscope.store.sql import chunks, dialect_insert
from beliefscope.store.tables import STEP_METRICS, Checkpoint, Trace, steps
from beliefscope.values.review import MetricColumns


class MetricColumnTable(Surface):
    def read_metric_columns(
        self,
        *,
        metric: str,
        variant: str = "filter",
        posterior: str = "mode",
        run_id: int | None = None,
        checkpoint_ids: Sequence[int] | None = None,
    ) -> MetricColumns:
        """One metric column of every matching trace, in trace-id order. Columns come from
        `metric_columns` blobs; traces read for the first time are read from their step rows in
        bulk and their blobs written, so the next rule change reads only blobs."""
        if metric not in STEP_METRICS:
            raise BadInputError(f"unknown metric {metric!r}; known: {', '.join(STEP_METRICS)}")
        scope = _trace_scope(
            variant=variant, posterior=posterior, run_id=run_id, checkpoint_ids=checkpoint_ids
        )
        traces_q = (
            sa.select(Trace.id, Trace.checkpoint_id, Trace.episode_id, Trace.length)
            .where(*scope)
            .order_by(Trace.id)
        )
        blobs_q = sa.select(MetricColumn.trace_id, MetricColumn.data).where(
            MetricColumn.metric == metric,
            MetricColumn.trace_id.in_(sa.select(Trace.id).where(*scope)),
        )
        with self._store.connect() as conn:
            traces = conn.execute(traces_q).all()
            cached = {
                trace_id: np.frombuffer(data, dtype="<f8")
                for trace_id, data in conn.execute(blobs_q)
            }
        table = np.array([tuple(r) for r in traces], dtype=np.int64).reshape(
            len(traces), 4
        )  # (n, 4)
        missing = [int(i) for i in table[:, 0] if int(i) not in cached]
        if missing:
            cached.update(self._cache_columns(metric, missing))
        parts = [cached[int(i)] for i in table[:, 0]]
        for (trace_id, length), part in zip(table[:, [0, 3]].tolist(), parts, strict=True):
            assert len(part) == length, (
                f"trace {trace_id}: {len(part)} stored steps, length {length}"
            )
        values = np.concatenate(parts) if parts else np.zeros(0)
        offsets = np.concatenate(([0], np.cumsum(table[:, 3]))).astype(np.int64)
        return MetricColumns(table[:, 0], table[:, 1], table[:, 2], offsets, values)

    def _cache_columns(self, metric: str, trace_ids: list[int]) -> dict[int, np.ndarray]:
        """Read `metric` of these traces from their step rows and store the column blobs."""
        out: dict[int, np.ndarray] = {}
        for ids in chunks(trace_ids):
            query = (
                sa.select(steps.c.trace_id, steps.c[metric])
                .where(steps.c.trace_id.in_(ids))
                .order_by(steps.c.trace_id, steps.c.t)
            )
            with self._store.connect() as conn:
                rows = conn.execute(query).all()
            # plain tuples: numpy probing SQLAlchemy rows for array interfaces is ~20x slower
            table = np.array([tuple(r) for r in rows], dtype=np.float64).reshape(
                len(rows), 2
            )  # (n, 2)
            owner = table[:, 0].astype(np.int64)
            cuts = np.flatnonzero(np.diff(owner)) + 1
            for chunk in np.split(np.arange(len(owner)), cuts):
                if len(chunk):
                    out[int(owner[chunk[0]])] = np.ascontiguousarray(table[chunk, 1])
            for trace_id in ids:
                out.setdefault(trace_id, np.zeros(0))
            with self._store.connect(write=True) as conn:
                conn.execute(
                    dialect_insert(conn, MetricColumn).on_conflict_do_nothing(),
                    [
                        {"trace_id": i, "metric": metric, "data": out[i].astype("<f8").tobytes()}
                        for i in ids
                    ],
                )
        return out


def _trace_scope(
    *, variant: str, posterior: str, run_id: int | None, checkpoint_ids: Sequence[int] | None
) -> list[Any]:
    """WHERE conditions selecting the traces a rule reads."""
    conditions = [Trace.variant == variant, Trace.posterior == posterior]
    if checkpoint_ids is not None:
        conditions.append(Trace.checkpoint_id.in_(list(checkpoint_ids)))
    if run_id is not None:
        conditions.append(
            Trace.checkpoint_id.in_(sa.select(Checkpoint.id).where(Checkpoint.run_id == run_id))
        )
    return conditions
