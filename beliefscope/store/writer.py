"""The store's write side: idempotent upserts, one-transaction trace writes, job state.

A trace is the unit of ingest work, (checkpoint, episode, variant, posterior). `write_trace` writes
its row, all step rows and its arrays in one transaction, so a crash leaves nothing behind, and
skips a unit that already exists (the unique key decides, so concurrent writers of one unit end
with exactly one trace: SQLite serialises writers with `BEGIN IMMEDIATE`; on PostgreSQL the
second `INSERT ... ON CONFLICT DO NOTHING` waits for the first transaction and then does
nothing). SQLAlchemy opens and commits that transaction; every row of the unit goes through its
raw driver connection (`write_unit`), encoded beforehand with numpy (`encode_trace`): the step
rows by `executemany` of one prepared statement on SQLite and one binary `COPY` on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from itertools import repeat
from typing import Any

import numpy as np
import sqlalchemy as sa

from beliefscope.errors import BadInputError, ConflictError, NotFoundError
from beliefscope.store.activity import record
from beliefscope.store.engine import Surface
from beliefscope.store.sql import dialect_insert
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
    utcnow,
)
from beliefscope.values.traces import RunDeleted, TraceData

PROBS_DTYPE = np.dtype("<f2")
"""KL groups and class probabilities are stored as float16: heat maps need no more."""

LIVE_JOB = timedelta(minutes=10)
"""A queued or running job silent for longer than this is taken for dead (its process was
killed): it no longer keeps its run from being deleted. Ingest beats at least once per unit."""

_PG_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_PG_COPY_TRAILER = struct.pack(">h", -1)


class StoreWriter(Surface):
    """Writes of runs, checkpoints, episodes, traces and job state."""

    # -- runs, checkpoints, episodes: insert if new, return the id either way --------------

    def ensure_run(
        self,
        name: str,
        *,
        logdir: str,
        format: str | None = None,
        family: str | None = None,
        replay_dirs: Sequence[str] = (),
    ) -> int:
        """The run's id; replay dirs not recorded yet are added to it."""
        run_id = self._ensure(
            Run,
            {"name": name},
            {
                "logdir": logdir,
                "format": format,
                "family": family,
                "replay_dirs": list(replay_dirs),
                "created": utcnow(),
            },
        )
        if replay_dirs:
            with self._store.connect(write=True) as conn:
                known = conn.execute(sa.select(Run.replay_dirs).where(Run.id == run_id)).scalar()
                merged = list(dict.fromkeys([*(known or []), *replay_dirs]))
                if merged != known:
                    conn.execute(sa.update(Run).where(Run.id == run_id).values(replay_dirs=merged))
        return run_id

    def find_run(self, name: str) -> int | None:
        """The id of the run named `name`, None when the store has none (registers nothing)."""
        with self._store.connect() as conn:
            return conn.execute(sa.select(Run.id).where(Run.name == name)).scalar()

    def delete_run(self, run_id: int, *, who: str) -> RunDeleted:
        """Remove a run and everything stored of it (checkpoints, episodes, traces with their
        steps, flags with their reviews, scores, probe summaries, its jobs) in one
        transaction, logged in the activity log as `who`'s. Refused while one of its jobs is
        queued or running with a live heartbeat, so an ingest never writes into a run that is
        going away."""
        with self._store.connect(write=True) as conn:
            name = conn.execute(sa.select(Run.name).where(Run.id == run_id)).scalar()
            if name is None:
                raise NotFoundError(f"no run with id {run_id}")
            live = conn.execute(
                sa.select(Job.id).where(
                    Job.run_id == run_id,
                    Job.state.in_(("queued", "running")),
                    sa.func.coalesce(Job.heartbeat, Job.created) >= utcnow() - LIVE_JOB,
                )
            ).scalar()
            if live is not None:
                minutes = int(LIVE_JOB.total_seconds() // 60)
                raise ConflictError(
                    f"run {name!r} is being ingested (job {live}): wait for it to finish (an "
                    f"ingest that was killed stops counting {minutes} minutes after its last sign "
                    "of life)"
                )
            checkpoints = sa.select(Checkpoint.id).where(Checkpoint.run_id == run_id)
            traces = sa.select(Trace.id).where(Trace.checkpoint_id.in_(checkpoints))
            counts = RunDeleted(
                name=name,
                checkpoints=_count(conn, checkpoints),
                episodes=_count(conn, sa.select(Episode.id).where(Episode.run_id == run_id)),
                traces=_count(conn, traces),
            )
            # steps carry no foreign key (see tables.steps): they go first, by their traces
            conn.execute(sa.delete(steps).where(steps.c.trace_id.in_(traces)))
            conn.execute(sa.delete(Job).where(Job.run_id == run_id))
            conn.execute(sa.delete(Run).where(Run.id == run_id))  # the rest cascades
            record(conn, who=who, action="run.delete", target=f"run:{name}", details=asdict(counts))
        return counts

    def ensure_checkpoint(
        self,
        run_id: int,
        *,
        content_hash: str,
        format: str,
        source_path: str,
        step: int | None = None,
        family: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> int:
        """A checkpoint version, identified in its run by the sha256 of its content."""
        return self._ensure(
            Checkpoint,
            {"run_id": run_id, "content_hash": content_hash},
            {
                "format": format,
                "source_path": source_path,
                "step": step,
                "family": family,
                "config": dict(config or {}),
                "created": utcnow(),
            },
        )

    def find_checkpoint(self, run_id: int, *, content_hash: str) -> int | None:
        with self._store.connect() as conn:
            return conn.execute(
                sa.select(Checkpoint.id).where(
                    Checkpoint.run_id == run_id, Checkpoint.content_hash == content_hash
                )
            ).scalar()

    def ensure_episode(
        self,
        run_id: int,
        *,
        key: str,
        format: str,
        source_path: str,
        length: int,
        episode_return: float | None = None,
        has_truth: bool = False,
        truth_summary: Mapping[str, Any] | None = None,
        locator: Mapping[str, Any] | None = None,
        fingerprint: str | None = None,
    ) -> int:
        """An episode, identified in its run by its format's stable key."""
        return self._ensure(
            Episode,
            {"run_id": run_id, "key": key},
            {
                "format": format,
                "source_path": source_path,
                "length": length,
                "episode_return": episode_return,
                "has_truth": has_truth,
                "truth_summary": dict(truth_summary or {}),
                "locator": dict(locator or {}),
                "fingerprint": fingerprint,
                "created": utcnow(),
            },
        )

    def _ensure(self, entity: Any, key: dict[str, Any], rest: dict[str, Any]) -> int:
        with self._store.connect(write=True) as conn:
            conn.execute(
                dialect_insert(conn, entity).values(**key, **rest).on_conflict_do_nothing()
            )
            where = [getattr(entity, k) == v for k, v in key.items()]
            return int(conn.execute(sa.select(entity.id).where(*where)).scalar_one())

    # -- traces --------------------------------------------------------------------------

    def trace_done(
        self, checkpoint_id: int, episode_id: int, variant: str, posterior: str = "mode"
    ) -> bool:
        with self._store.connect() as conn:
            found = conn.execute(
                sa.select(Trace.id).where(
                    Trace.checkpoint_id == checkpoint_id,
                    Trace.episode_id == episode_id,
                    Trace.variant == variant,
                    Trace.posterior == posterior,
                )
            ).first()
        return found is not None

    def done_episodes(
        self, checkpoint_id: int, *, variant: str, posterior: str = "mode"
    ) -> set[int]:
        """Ids of the episodes whose trace for this checkpoint, variant and posterior is stored
        (one query for a whole ingest plan instead of one `trace_done` per unit)."""
        with self._store.connect() as conn:
            rows = conn.execute(
                sa.select(Trace.episode_id).where(
                    Trace.checkpoint_id == checkpoint_id,
                    Trace.variant == variant,
                    Trace.posterior == posterior,
                )
            )
            return {int(r) for r in rows.scalars()}

    def done_episode_keys(
        self,
        checkpoint_id: int,
        *,
        variant: str,
        posterior: str = "mode",
        covering: Sequence[str] = (),
    ) -> set[str]:
        """Keys of the episodes whose unit is stored (with every metric in `covering`):
        planning happens before episodes are loaded (and registered), so it goes by the
        replay format's stable key."""
        mask = _metrics_mask(covering)
        with self._store.connect() as conn:
            rows = conn.execute(
                sa.select(Episode.key)
                .join(Trace, Trace.episode_id == Episode.id)
                .where(
                    Trace.checkpoint_id == checkpoint_id,
                    Trace.variant == variant,
                    Trace.posterior == posterior,
                    Trace.metrics_mask.op("&")(mask) == mask,
                )
            )
            return set(rows.scalars())

    def write_trace(
        self, checkpoint_id: int, episode_id: int, variant: str, posterior: str, data: TraceData
    ) -> int | None:
        """Store one unit in one transaction; returns its trace id, or None when the unit was
        already stored (by an earlier run or a concurrent writer) and nothing was written."""
        return self.write_traces(checkpoint_id, variant, posterior, [(episode_id, data)])[0]

    def write_traces(
        self,
        checkpoint_id: int,
        variant: str,
        posterior: str,
        traces: Sequence[tuple[int, TraceData]],
    ) -> list[int | None]:
        """`write_trace` for each (episode id, data) of an ingest batch, each unit in its own
        transaction (a crash leaves every unit whole or absent) on one connection, so the
        pool checkout and its liveness ping are paid once per batch, not once per unit."""
        out: list[int | None] = []
        with self._store.connection(write=True) as conn:
            dbapi = conn.connection.driver_connection
            assert dbapi is not None
            for episode_id, data in traces:
                unit = encode_trace(data)  # before the transaction: the lock is held less
                with conn.begin():
                    out.append(
                        write_unit(
                            dbapi, conn.dialect, unit, checkpoint_id, episode_id, variant, posterior
                        )
                    )
        return out

    def fill_trace(
        self, checkpoint_id: int, episode_id: int, variant: str, posterior: str, data: TraceData
    ) -> int | None:
        """Complete a stored unit computed with fewer metrics (`--metrics belief`) with `data`,
        which has all of them: its step rows are rewritten in one transaction and the trace
        keeps its id (and the flags and reviews on it). Returns the trace id; None when no
        stored trace of the unit lacks a metric of `data` (a concurrent writer filled it)."""
        unit = encode_trace(data)
        mask = unit.summary["metrics_mask"]
        with self._store.connect(write=True) as conn:
            trace_id = conn.execute(
                sa.update(Trace)
                .where(
                    Trace.checkpoint_id == checkpoint_id,
                    Trace.episode_id == episode_id,
                    Trace.variant == variant,
                    Trace.posterior == posterior,
                    Trace.metrics_mask != mask,
                    Trace.metrics_mask.op("|")(mask) == mask,  # stored metrics: a subset
                )
                .values(**unit.summary)
                .returning(Trace.id)
            ).scalar()
            if trace_id is None:
                return None
            conn.execute(sa.delete(steps).where(steps.c.trace_id == trace_id))
            dbapi = conn.connection.driver_connection
            assert dbapi is not None
            with contextlib.closing(dbapi.cursor()) as cursor:
                _write_steps(cursor, conn.dialect.name, trace_id, unit.columns, unit.nan_mask)
        return int(trace_id)

    # -- jobs ----------------------------------------------------------------------------

    def create_job(
        self,
        kind: str,
        *,
        run_id: int | None = None,
        args: Mapping[str, Any] | None = None,
        total: int = 0,
    ) -> int:
        with self._store.connect(write=True) as conn:
            stmt = sa.insert(Job).values(
                kind=kind,
                run_id=run_id,
                state="queued",
                args=dict(args or {}),
                done=0,
                total=total,
                created=utcnow(),
            )
            return int(conn.execute(stmt.returning(Job.id)).scalar_one())

    def start_job(self, job_id: int) -> None:
        now = utcnow()
        self._update_job(job_id, state="running", started=now, heartbeat=now)

    def update_job(
        self,
        job_id: int,
        *,
        done: int | None = None,
        add_done: int = 0,
        total: int | None = None,
        checkpoints_total: int | None = None,
        episodes: int | None = None,
        add_checkpoints_done: int = 0,
        message: str | None = None,
    ) -> None:
        """Progress and heartbeat in one: with no arguments it only beats the heart.
        `add_done` increments atomically, for several workers on one job; the plan's shape
        (`checkpoints_total` x `episodes`) and `add_checkpoints_done` say it in a user's terms."""
        values: dict[str, Any] = {"heartbeat": utcnow()}
        if done is not None:
            values["done"] = done
        if add_done:
            values["done"] = Job.done + add_done
        if total is not None:
            values["total"] = total
        if checkpoints_total is not None:
            values["checkpoints_total"] = checkpoints_total
        if episodes is not None:
            values["episodes_total"] = episodes
        if add_checkpoints_done:
            values["checkpoints_done"] = Job.checkpoints_done + add_checkpoints_done
        if message is not None:
            values["message"] = message
        self._update_job(job_id, **values)

    def record_job_error(
        self, job_id: int, *, unit: str, reason: str, file: str | None = None
    ) -> None:
        """A unit that failed (e.g. a corrupt episode file); the job itself goes on."""
        with self._store.connect(write=True) as conn:
            conn.execute(
                sa.insert(JobError).values(
                    job_id=job_id, unit=unit, file=file, reason=reason, created=utcnow()
                )
            )

    def finish_job(self, job_id: int, *, failed: bool = False, message: str | None = None) -> None:
        now = utcnow()
        values: dict[str, Any] = {"state": "failed" if failed else "done", "finished": now}
        if message is not None:
            values["message"] = message
        self._update_job(job_id, heartbeat=now, **values)

    def _update_job(self, job_id: int, **values: Any) -> None:
        with self._store.connect(write=True) as conn:
            updated = conn.execute(sa.update(Job).where(Job.id == job_id).values(**values))
            if updated.rowcount != 1:
                raise BadInputError(f"no job with id {job_id}")


def _count(conn: sa.Connection, query: sa.Select[Any]) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one())


@dataclass(frozen=True)
class EncodedTrace:
    """One trace as the driver takes it, encoded once per trace with whole-array numpy
    operations (never per row): what `write_trace` and the bench's bare-driver baseline both
    hand to `write_unit`, so the two write the same rows and bytes."""

    summary: dict[str, Any]
    """The `traces` row's columns that come from the data: length, metrics mask, summaries."""
    columns: dict[str, np.ndarray]
    """Present step metrics in `STEP_METRICS` order, float64 (T,), NaN as is."""
    nan_mask: np.ndarray
    """(T,) int64, bit i set where metric i is NaN."""
    arrays: list[tuple[str, str, str, bytes]]
    """`trace_arrays` rows without the trace id: name, dtype, shape as JSON, data."""


def encode_trace(data: TraceData) -> EncodedTrace:
    """Checked, converted and summarised before the write transaction opens, so the write lock
    is held only for the driver's calls."""
    length = data.length
    present = [name for name in STEP_METRICS if name in data.metrics]
    columns = {name: np.asarray(data.metrics[name], dtype=np.float64) for name in present}
    for name, col in columns.items():
        assert col.shape == (length,), f"metric {name}: shape {col.shape}, expected ({length},)"
    bits = np.array([1 << STEP_METRICS.index(name) for name in present], dtype=np.int64)
    matrix = np.stack(list(columns.values())) if columns else np.zeros((0, length))  # (M, T)
    nan_mask = bits @ np.isnan(matrix)
    kl, correction = columns.get("kl"), columns.get("correction")
    summary = {
        "length": length,
        "metrics_mask": _metrics_mask(present),
        "kl_mean": _finite_mean(kl),
        "kl_max": _finite_max(kl),
        "correction_mean": _finite_mean(correction),
        "correction_max": _finite_max(correction),
    }
    return EncodedTrace(summary, columns, nan_mask, _encode_arrays(data))


def write_unit(
    dbapi: Any,
    dialect: sa.Dialect,
    unit: EncodedTrace,
    checkpoint_id: int,
    episode_id: int,
    variant: str,
    posterior: str,
) -> int | None:
    """One unit's rows on the raw DB-API connection, inside the caller's open transaction: the
    trace row unless its unique key is taken (then None, and nothing else is written), then its
    step and array rows. The same few statements each time, so the drivers keep them prepared
    (sqlite3's statement cache; psycopg prepares a statement on its fifth run). On PostgreSQL
    the transaction's settings and the trace row go in one round trip (a pipeline)."""
    backend = dialect.name
    # what SQLAlchemy hands the driver for a timestamp (its own text on SQLite), so this row
    # reads and compares like rows written through SQLAlchemy
    created = Trace.__table__.c.created.type.dialect_impl(dialect).bind_processor(dialect)
    now = utcnow()
    row = {
        "checkpoint_id": checkpoint_id,
        "episode_id": episode_id,
        "probe": variant,
        "posterior": posterior,
        "created": created(now) if created else now,
        **unit.summary,
    }
    sql = _insert_sql(Trace.__tablename__, list(row), _MARKS[backend])
    with contextlib.closing(dbapi.cursor()) as cursor:
        with dbapi.pipeline() if backend == "postgresql" else contextlib.nullcontext():
            if backend == "postgresql":
                # No fsync wait per unit: a server crash may lose the last few units (never
                # half of one), which the next ingest recomputes; commits stay 20% cheaper.
                cursor.execute("SET LOCAL synchronous_commit = off")
            cursor.execute(f"{sql} ON CONFLICT DO NOTHING RETURNING id", tuple(row.values()))
            found = cursor.fetchone()
        if found is None:
            return None
        _write_steps(cursor, backend, found[0], unit.columns, unit.nan_mask)
        _write_arrays(cursor, backend, found[0], unit.arrays)
    return int(found[0])


_MARKS = {"sqlite": "?", "postgresql": "%s"}
"""Each driver's parameter marker."""
_STEP_COLUMNS = ("trace_id", "t", "nan_mask")
_ARRAY_COLUMNS = ("trace_id", "name", "dtype", "shape", "data")


def _write_steps(
    cursor: Any, backend: str, trace_id: int, columns: dict[str, np.ndarray], nan_mask: np.ndarray
) -> None:
    """On SQLite `executemany` of one prepared statement, on PostgreSQL one binary `COPY` whose
    payload numpy builds."""
    names = [*_STEP_COLUMNS, *columns]
    if backend == "sqlite":
        rows = zip(
            repeat(trace_id),
            range(len(nan_mask)),
            nan_mask.tolist(),
            *(col.tolist() for col in columns.values()),
            strict=False,
        )
        cursor.executemany(_insert_sql(steps.name, names, _MARKS[backend]), rows)
    else:
        sql = f"COPY {steps.name} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)"
        with cursor.copy(sql) as copy:
            copy.write(_pg_binary_rows(trace_id, columns, nan_mask))


def _write_arrays(
    cursor: Any, backend: str, trace_id: int, arrays: list[tuple[str, str, str, bytes]]
) -> None:
    """A few rows: one `executemany` (pipelined by psycopg)."""
    if arrays:
        sql = _insert_sql(TraceArray.__tablename__, _ARRAY_COLUMNS, _MARKS[backend])
        cursor.executemany(sql, [(trace_id, *a) for a in arrays])


def _insert_sql(table: str, names: Sequence[str], mark: str) -> str:
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join([mark] * len(names))})"


def _pg_binary_rows(trace_id: int, columns: dict[str, np.ndarray], nan_mask: np.ndarray) -> bytes:
    """PostgreSQL binary COPY payload for the step rows: every row has the same layout (field
    count, then length + big-endian value per field), so numpy writes it in one go."""
    fields: list[tuple[str, str]] = [("nfields", ">i2")]
    for name in _STEP_COLUMNS:
        fields += [(f"len_{name}", ">i4"), (name, ">i4")]
    for name in columns:
        fields += [(f"len_{name}", ">i4"), (name, ">f8")]
    rows = np.empty(len(nan_mask), dtype=np.dtype(fields))
    rows["nfields"] = len(_STEP_COLUMNS) + len(columns)
    for name in _STEP_COLUMNS:
        rows[f"len_{name}"] = 4
    rows["trace_id"] = trace_id
    rows["t"] = np.arange(len(nan_mask))
    rows["nan_mask"] = nan_mask
    for name, col in columns.items():
        rows[f"len_{name}"] = 8
        rows[name] = col
    return _PG_COPY_HEADER + rows.tobytes() + _PG_COPY_TRAILER


def _metrics_mask(names: Iterable[str]) -> int:
    return sum(1 << STEP_METRICS.index(name) for name in names)


def _encode_arrays(data: TraceData) -> list[tuple[str, str, str, bytes]]:
    length = data.length
    named: dict[str, tuple[np.ndarray, np.dtype]] = {"kl_groups": (data.kl_groups, PROBS_DTYPE)}
    if data.post_probs is not None:
        named["post_probs"] = (data.post_probs, PROBS_DTYPE)
    if data.prior_probs is not None:
        named["prior_probs"] = (data.prior_probs, PROBS_DTYPE)
    for name, value in data.extra.items():
        value = np.asarray(value)
        if value.dtype.kind not in "biuf":
            raise BadInputError(f"trace extra {name!r} has dtype {value.dtype}: numbers only")
        named[f"extra:{name}"] = (value, value.dtype.newbyteorder("<"))
    out = []
    for name, (value, dtype) in named.items():
        with np.errstate(over="ignore"):  # beyond float16's range is stored as inf, visibly
            value = np.ascontiguousarray(value, dtype=dtype)
        assert value.shape[:1] == (length,), (
            f"{name}: shape {value.shape}, expected ({length}, ...)"
        )
        out.append((name, dtype.str, json.dumps(list(value.shape)), value.tobytes()))
    return out


def _finite_mean(col: np.ndarray | None) -> float | None:
    finite = None if col is None else col[np.isfinite(col)]
    return None if finite is None or not len(finite) else float(finite.mean())


def _finite_max(col: np.ndarray | None) -> float | None:
    finite = None if col is None else col[np.isfinite(col)]
    return None if finite is None or not len(finite) else float(finite.max())
