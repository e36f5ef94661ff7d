"""Traces and flags as tables (CSV or Parquet), streamed in bounded record batches.

A trace row is (run, checkpoint, checkpoint_step, episode_id, episode_key, variant, posterior, t)
followed by every metric of `beliefscope.values.traces.METRICS` under its name. NaN and +/-inf are
written as such (`nan`, `inf` in CSV); a metric the trace does not have is empty (null), so
"not computed" is never confused with NaN. Rows are read window by window through the read
layer and written batch by batch: memory is bounded by `BATCH_ROWS`, not by the store's size.
The file appears under its name only once complete (written beside it, then renamed).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from beliefscope.errors import BadInputError
from beliefscope.export.selection import (
    Filters,
    describe,
    select_checkpoints,
    select_episode,
    select_runs,
    select_traces,
)
from beliefscope.store.engine import Store
from beliefscope.values.page import MAX_LIMIT
from beliefscope.values.traces import METRICS

TABLE_FORMATS = ("csv", "parquet")
BATCH_ROWS = 65_536
"""Rows per record batch (and per read window of one trace)."""

TRACE_SCHEMA = pa.schema(
    [
        ("run", pa.string()),
        ("checkpoint", pa.int64()),
        ("checkpoint_step", pa.int64()),
        ("episode_id", pa.int64()),
        ("episode_key", pa.string()),
        ("variant", pa.string()),
        ("posterior", pa.string()),
        ("t", pa.int64()),
        *((name, pa.float64()) for name in METRICS),
    ]
)

FLAG_SCHEMA = pa.schema(
    [
        ("flag", pa.int64()),
        ("run", pa.string()),
        ("checkpoint", pa.int64()),
        ("checkpoint_step", pa.int64()),
        ("episode_id", pa.int64()),
        ("episode_key", pa.string()),
        ("variant", pa.string()),
        ("t0", pa.int64()),
        ("t1", pa.int64()),
        ("source", pa.string()),
        ("rule", pa.string()),
        ("rule_version", pa.int64()),
        ("peak", pa.float64()),
        ("peak_t", pa.int64()),
        ("severity", pa.string()),
        ("state", pa.string()),
        ("category", pa.string()),
        ("tags", pa.string()),  # joined with ";" (CSV has no lists)
        ("notes", pa.string()),
        ("reviewed", pa.bool_()),
        ("stale", pa.bool_()),
        ("created", pa.timestamp("us", tz="UTC")),
        ("updated", pa.timestamp("us", tz="UTC")),
        ("updated_by", pa.string()),
    ]
)


def series_tag(variant: str, posterior: str, metric: str) -> str:
    """The name of one metric of one trace variant in TensorBoard and W&B."""
    return f"{variant}/{metric}" if posterior == "mode" else f"{variant}@{posterior}/{metric}"


def trace_batches(
    store: Store, filters: Filters, batch_rows: int = BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """Every step of every selected trace, as record batches of at most `batch_rows` rows."""
    buffer: list[pa.RecordBatch] = []
    buffered = 0
    for sel in select_traces(store, filters):
        for t0 in range(0, sel.trace.length, batch_rows):
            t1 = min(sel.trace.length, t0 + batch_rows) - 1
            series = store.queries.read_trace(trace_id=sel.trace.id, t0=t0, t1=t1).series
            t = next(iter(series.values())).t if series else np.arange(t0, t1 + 1)
            n = len(t)
            columns: list[pa.Array] = [
                pa.array([sel.run.name] * n, pa.string()),
                pa.array(np.full(n, sel.checkpoint.id), pa.int64()),
                pa.array([sel.checkpoint.step] * n, pa.int64()),
                pa.array(np.full(n, sel.episode.id), pa.int64()),
                pa.array([sel.episode.key] * n, pa.string()),
                pa.array([sel.trace.variant] * n, pa.string()),
                pa.array([sel.trace.posterior] * n, pa.string()),
                pa.array(t, pa.int64()),
            ]
            for name in METRICS:
                s = series.get(name)
                assert s is None or np.array_equal(s.t, t), (name, s.t.shape if s else None)
                # from_pandas=False keeps NaN a float value, not a null
                columns.append(pa.nulls(n, pa.float64()) if s is None else pa.array(s.values))
            buffer.append(pa.RecordBatch.from_arrays(columns, schema=TRACE_SCHEMA))
            buffered += n
            if buffered >= batch_rows:
                yield from _rebatch(buffer, batch_rows)
                buffer, buffered = [], 0
    if buffer:
        yield from _rebatch(buffer, batch_rows)


def flag_batches(
    store: Store, filters: Filters, batch_rows: int = BATCH_ROWS, *, require: bool = True
) -> Iterator[pa.RecordBatch]:
    """The selected runs' flags (rule and manual), a page of the review store at a time;
    with `require`, no matching flag at all is a `BadInputError`."""
    found = False
    for run in select_runs(store, filters):
        checkpoints = {c.id: c for c in select_checkpoints(store, run, filters.checkpoint)}
        episode_id: int | None = None
        if filters.episode is not None:
            episode = select_episode(store, run, filters.episode)
            if episode is None:
                continue
            episode_id = episode.id
        keys: dict[int, str] = {}
        for checkpoint_id in checkpoints if filters.checkpoint is not None else [None]:
            offset = 0
            while True:
                page = store.reviews.list_flags(
                    run_id=run.id,
                    checkpoint_id=checkpoint_id,
                    episode_id=episode_id,
                    limit=min(batch_rows, MAX_LIMIT),
                    offset=offset,
                )
                offset += len(page.items)
                flags = [
                    f for f in page.items if filters.variant is None or f.variant == filters.variant
                ]
                rows = []
                for f in flags:
                    if f.episode_id not in keys:
                        keys[f.episode_id] = store.queries.get_episode(episode_id=f.episode_id).key
                    checkpoint = checkpoints.get(f.checkpoint_id) or store.queries.get_checkpoint(
                        checkpoint_id=f.checkpoint_id
                    )
                    rows.append(
                        {
                            "flag": f.id,
                            "run": run.name,
                            "checkpoint": f.checkpoint_id,
                            "checkpoint_step": checkpoint.step,
                            "episode_id": f.episode_id,
                            "episode_key": keys[f.episode_id],
                            "variant": f.variant,
                            "t0": f.t0,
                            "t1": f.t1,
                            "source": f.source,
                            "rule": f.rule_name,
                            "rule_version": f.rule_version,
                            "peak": f.peak,
                            "peak_t": f.peak_t,
                            "severity": f.severity,
                            "state": f.state,
                            "category": f.category,
                            "tags": ";".join(f.tags),
                            "notes": f.notes,
                            "reviewed": f.reviewed,
                            "stale": f.stale,
                            "created": f.created,
                            "updated": f.updated,
                            "updated_by": f.updated_by,
                        }
                    )
                if rows:
                    found = True
                    yield pa.RecordBatch.from_pylist(rows, schema=FLAG_SCHEMA)
                if not page.items or offset >= page.total:
                    break
    if require and not found:
        raise BadInputError(f"no stored flags match {describe(filters)}")


def write_table(batches: Iterable[pa.RecordBatch], schema: pa.Schema, fmt: str, out: Path) -> int:
    """Write the batches to `out` as CSV or Parquet; returns the number of rows written."""
    if fmt not in TABLE_FORMATS:
        raise BadInputError(f"unknown table format {fmt!r}; use one of {list(TABLE_FORMATS)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    rows = 0
    try:
        writer: pa_csv.CSVWriter | pq.ParquetWriter
        writer = (
            pa_csv.CSVWriter(partial, schema) if fmt == "csv" else pq.ParquetWriter(partial, schema)
        )
        with writer:
            for batch in batches:
                writer.write_batch(batch)
                rows += batch.num_rows
        partial.replace(out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return rows


def _rebatch(batches: list[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """Many small per-trace batches as fewer batches of about `size` rows (Parquet row
    groups and CSV writes of a useful size); copies at most one batch worth of rows."""
    table = pa.Table.from_batches(batches)
    yield from table.combine_chunks().to_batches(max_chunksize=size)
