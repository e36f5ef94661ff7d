"""Store write and read speed, SQLite and PostgreSQL, with ratios measured in the same run.

    python bench/store.py [--pg URL] [--rows 1000000] [--fill 1000000]

Writes: step-rows/s of `StoreWriter.write_traces` as ingest calls it (batches of 16 units, one
transaction each; bulk: executemany on SQLite, binary COPY on PostgreSQL; traces of 1000 steps,
every metric, arrays included) against the bare driver writing the same rows and bytes
(`write_rates`), batch by batch in turn, and against a naive per-row insert through a SQLAlchemy
session, in the same run. Reads: latency of `read_trace` (all metrics) of a 1000-step trace with
`--fill` step rows in the store (p50/p95 over 200 reads).
PostgreSQL uses a scratch database created on the server at `--pg` (default: the tests' server)
and dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import sqlalchemy as sa
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beliefscope.config import get_settings  # noqa: E402
from beliefscope.store.engine import Store, open_store, upgrade  # noqa: E402
from beliefscope.store.tables import STEP_METRICS, steps  # noqa: E402
from beliefscope.store.writer import EncodedTrace, encode_trace, write_unit  # noqa: E402
from beliefscope.values.traces import METRICS, TraceData  # noqa: E402

STEPS_PER_TRACE = 1000
BATCH = 16
"""Units per `write_traces` call: ingest's default model batch."""


def trace(seed: int) -> TraceData:
    rng = np.random.default_rng(seed)
    metrics = {name: rng.random(STEPS_PER_TRACE) for name in METRICS}
    metrics["kl"][::97] = np.nan
    return TraceData(
        metrics=metrics,
        # float32, as ingest hands them over; the `small` preset: 32 groups x 16 classes, of
        # which ingest keeps 4 groups' probs
        kl_groups=rng.random((STEPS_PER_TRACE, 32), dtype=np.float32),
        post_probs=rng.random((STEPS_PER_TRACE, 4, 16), dtype=np.float32),
        prior_probs=rng.random((STEPS_PER_TRACE, 4, 16), dtype=np.float32),
    )


def seed_units(store: Store, n: int, offset: int = 0) -> tuple[int, list[int]]:
    w = store.writer
    run_id = w.ensure_run("bench", logdir="/bench")
    checkpoint_id = w.ensure_checkpoint(
        run_id, content_hash=f"{offset:064d}", format="native", source_path="/bench/c"
    )
    episodes = [
        w.ensure_episode(
            run_id, key=f"ep-{offset + i}", format="native", source_path="/e", length=1000
        )
        for i in range(n)
    ]
    return checkpoint_id, episodes


def write_rates(store: Store, rows: int, offset: int) -> tuple[float, float]:
    """Step-rows/s of `write_traces` (ingest's batches of `BATCH` units) and of the bare driver
    writing the same units, batch by batch in turn (so both see the same table sizes, the same
    machine load and, on average, the same share of the backend's periodic work).

    The bare driver writes the same rows and bytes (the trace row, its step rows, its three
    array rows; one transaction per trace with the same settings) with the writer's own driver
    calls (`write_unit`: executemany on SQLite, binary COPY on PostgreSQL), on one raw DB-API
    connection held for the whole run: no SQLAlchemy, no pool checkout, no ping, and its units
    encoded before the clock starts. The writer pays its encoding and all the rest."""
    batches = max(1, rows // (STEPS_PER_TRACE * BATCH))
    checkpoint_id, episodes = seed_units(store, 2 * batches * BATCH, offset)
    data = [trace(i) for i in range(min(batches * BATCH, 20))]
    encoded = [encode_trace(d) for d in data]
    raw = store.engine.raw_connection()
    dbapi = raw.driver_connection
    times = [0.0, 0.0]
    # Which side goes first is drawn per pair: a fixed alternation can line SQLite's WAL
    # checkpoint (every ~8 commits of these traces) up with one side and bill it all of them.
    first = np.random.default_rng(0).integers(0, 2, batches).tolist()
    try:
        for b in range(batches):
            for side in (first[b], 1 - first[b]):
                units = [
                    (episodes[(2 * b + side) * BATCH + i], (b * BATCH + i) % len(data))
                    for i in range(BATCH)
                ]
                start = time.perf_counter()
                if side == 0:
                    store.writer.write_traces(
                        checkpoint_id, "filter", "mode", [(e, data[k]) for e, k in units]
                    )
                else:
                    for episode_id, k in units:
                        bare_write(
                            dbapi, store.engine.dialect, checkpoint_id, episode_id, encoded[k]
                        )
                times[side] += time.perf_counter() - start
    finally:
        raw.close()
    written = batches * BATCH * STEPS_PER_TRACE
    return written / times[0], written / times[1]


def bare_write(
    dbapi: Any, dialect: sa.Dialect, checkpoint_id: int, episode_id: int, unit: EncodedTrace
) -> None:
    """One unit in one transaction on a raw DB-API connection."""
    try:
        if dialect.name == "sqlite":  # the store's connections leave BEGIN to their owner
            dbapi.execute("BEGIN IMMEDIATE")
        write_unit(dbapi, dialect, unit, checkpoint_id, episode_id, "filter", "mode")
        dbapi.commit()
    except BaseException:
        dbapi.rollback()
        raise


def naive_rows_per_s(store: Store, rows: int, offset: int) -> float:
    """What a straightforward implementation does: one INSERT per step row, one transaction
    per trace, through an ORM session."""
    n = max(1, rows // STEPS_PER_TRACE)
    checkpoint_id, episodes = seed_units(store, n, offset)
    data = trace(0)
    all_metrics = (1 << len(STEP_METRICS)) - 1
    start = time.perf_counter()
    for episode_id in episodes:
        with Session(store.engine) as session, session.begin():
            trace_id = session.execute(
                sa.text(
                    "INSERT INTO traces (checkpoint_id, episode_id, probe, posterior, length,"
                    " metrics_mask, created) VALUES (:c, :e, 'filter', 'mode', :n, :mask,"
                    " CURRENT_TIMESTAMP) RETURNING id"
                ),
                {"c": checkpoint_id, "e": episode_id, "n": STEPS_PER_TRACE, "mask": all_metrics},
            ).scalar_one()
            for t in range(STEPS_PER_TRACE):
                values = {name: float(data.metrics[name][t]) for name in STEP_METRICS}
                session.execute(sa.insert(steps).values(trace_id=trace_id, t=t, **values))
    return n * STEPS_PER_TRACE / (time.perf_counter() - start)


def read_latency_ms(store: Store, fill: int) -> tuple[float, float]:
    have = store.queries.list_runs().items[0].n_traces * STEPS_PER_TRACE
    missing = max(0, fill - have)
    if missing:
        write_rates(store, missing // 2, offset=10_000)
    traces = store.queries.list_traces(limit=10_000).items
    ids = np.random.default_rng(0).choice([t.id for t in traces], 200)
    times = []
    for trace_id in ids:
        start = time.perf_counter()
        got = store.queries.read_trace(trace_id=int(trace_id))
        times.append(time.perf_counter() - start)
        assert len(got.series) == len(STEP_METRICS) and len(got.series["kl"].t) == 1000
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 95) * 1e3)


def measure(name: str, url: str, rows: int, fill: int) -> None:
    upgrade(url)
    store = open_store(url)
    try:
        naive = naive_rows_per_s(store, rows // 50, offset=0)
        bulk, bare = write_rates(store, rows, offset=1_000)
        p50, p95 = read_latency_ms(store, fill)
        total = store.queries.list_runs().items[0].n_traces * STEPS_PER_TRACE
    finally:
        store.close()
    print(
        f"{name:<10} writes {bulk:>9,.0f} step-rows/s = {bulk / naive:5.1f}x naive per-row "
        f"({naive:,.0f}/s), {bulk / bare:4.2f}x the bare driver's bulk path ({bare:,.0f}/s) | "
        f"read 1000-step trace, all metrics, {total:,} rows stored: "
        f"p50 {p50:.1f} ms, p95 {p95:.1f} ms",
        flush=True,
    )


@contextmanager
def scratch_pg(server: str) -> Iterator[str]:
    libpq = server.replace("postgresql+psycopg://", "postgresql://", 1)
    name = f"bs_bench_{os.getpid()}"
    with psycopg.connect(libpq, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(libpq, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_pg = get_settings().test_pg or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    parser.add_argument("--pg", default=default_pg, help="PostgreSQL server URL")
    parser.add_argument(
        "--rows",
        type=int,
        default=1_000_000,
        help="step rows each side writes (62 batch pairs: enough to average a busy machine out)",
    )
    parser.add_argument("--fill", type=int, default=1_000_000, help="step rows before reads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measure("sqlite", f"sqlite:///{tmp}/bench.db", args.rows, args.fill)
    with scratch_pg(args.pg) as url:
        measure("postgresql", url, args.rows, args.fill)


if __name__ == "__main__":
    main()
