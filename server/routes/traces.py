"""Traces: listing, per-step metric series (downsampled by the read layer) and arrays."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from beliefscope.errors import BadInputError
from server.deps import IdPath, IdQuery, PageDep, QueriesDep, VariantDep
from server.schemas import TraceArrayPublic, TracePublic, TraceSeriesPublic, TracesPublic

router = APIRouter(prefix="/traces", tags=["traces"])

StepQuery = Annotated[int | None, Query(ge=0, le=2**31 - 1)]
MAX_POINTS = 100_000


@router.get("")
def list_traces(
    queries: QueriesDep,
    page: PageDep,
    variant: VariantDep,
    checkpoint_id: IdQuery = None,
    episode_id: IdQuery = None,
    posterior: Annotated[str | None, Query(max_length=50)] = None,
) -> TracesPublic:
    found = queries.list_traces(
        checkpoint_id=checkpoint_id,
        episode_id=episode_id,
        variant=variant,
        posterior=posterior,
        limit=page.limit,
        offset=page.offset,
    )
    return TracesPublic.of(found)


@router.get("/{trace_id}")
def get_trace(queries: QueriesDep, trace_id: IdPath) -> TracePublic:
    return TracePublic.model_validate(queries.get_trace(trace_id=trace_id))


@router.get("/{trace_id}/series")
def read_series(
    queries: QueriesDep,
    trace_id: IdPath,
    metrics: Annotated[
        str | None, Query(max_length=1000, description="comma-separated; default all")
    ] = None,
    t0: StepQuery = None,
    t1: StepQuery = None,
    max_points: Annotated[int | None, Query(ge=2, le=MAX_POINTS)] = None,
) -> TraceSeriesPublic:
    """Metric series of steps t0..t1 (inclusive); with `max_points`, min/max downsampled so
    spikes, NaN and both ends survive. NaN and infinities arrive as strings."""
    if t0 is not None and t1 is not None and t1 < t0:
        raise BadInputError(f"empty step range: t1={t1} < t0={t0}")
    names = None if metrics is None else [m.strip() for m in metrics.split(",") if m.strip()]
    found = queries.read_trace(
        trace_id=trace_id, metrics=names, t0=t0, t1=t1, max_points=max_points
    )
    return TraceSeriesPublic.model_validate(
        {
            "trace_id": found.trace_id,
            "length": found.length,
            "series": {
                name: {"t": s.t.tolist(), "values": s.values.tolist()}
                for name, s in found.series.items()
            },
            "absent": list(found.absent),
            "downsampled": found.downsampled,
        }
    )


@router.get("/{trace_id}/arrays/{name}")
def read_array(
    queries: QueriesDep,
    trace_id: IdPath,
    name: Annotated[str, Path(max_length=100)],
    t0: StepQuery = None,
    t1: StepQuery = None,
    max_points: Annotated[int | None, Query(ge=2, le=MAX_POINTS)] = None,
) -> TraceArrayPublic:
    """A stored per-step array (e.g. `kl_groups`), rows t0..t1, downsampled by max."""
    found = queries.read_array(trace_id=trace_id, name=name, t0=t0, t1=t1, max_points=max_points)
    values = found.values.astype("float64")
    return TraceArrayPublic.model_validate(
        {
            "trace_id": found.trace_id,
            "name": found.name,
            "t": found.t.tolist(),
            "values": values.tolist(),
            "shape": list(values.shape),
            "downsampled": found.downsampled,
        }
    )
