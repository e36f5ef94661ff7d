"""The store's write side: idempotent upserts, one-transaction trace writes, job state.

A trace is the unit of ingest work, (checkpoint, episode, variant, posterior). `write_trace` writes
its row, all step rows and its arrays in one transaction, so a crash leaves nothing behind, and
skips a unit that already exists (the unique key decides, so concurrent writers of one unit end
with exactly one trace: SQLite serialises writers with `BEGIN IMMEDIATE`; on PostgreSQL the
second `INSERT ... ON CONFLICT DO NOTHING` waits for the first transaction and then does
nothing). Step rows go in bulk through the raw driver connection of that same transaction:
`executemany` on SQLite, binary `COPY` built with numpy on PostgreSQL.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
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
        length = data.length
        columns, nan_mask = _step_columns(data)
        arrays = _encode_arrays(data)
        row = {
            "checkpoint_id": checkpoint_id,
            "episode_id": episode_id,
            "variant": variant,
            "posterior": posterior,
            "length": length,
            "metrics_mask": _metrics_mask(columns),
            "kl_mean": _finite_mean(columns.get("kl")),
            "kl_max": _finite_max(columns.get("kl")),
            "correction_mean": _finite_mean(columns.get("correction")),
            "correction_max": _finite_max(columns.get("correction")),
            "created": utcnow(),
        }
        with self._store.connect(write=True) as conn:
            if conn.dialect.name == "postgresql":
                # No fsync wait per unit: a server crash may lose the last few units (never
                # half of one), which the next ingest recomputes; commits stay 20% cheaper.
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            stmt = (
                dialect_insert(conn, Trace)
                .values(**row)
                .on_conflict_do_nothing()
                .returning(Trace.id)
            )
            trace_id = conn.execute(stmt).scalar()
            if trace_id is None:
                return None
            _write_steps(conn, trace_id, columns, nan_mask)
            self._write_arrays(conn, trace_id, arrays)
        return int(trace_id)

    def fill_trace(
        self, checkpoint_id: int, episode_id: int, variant: str, posterior: str, data: TraceData
    ) -> int | None:
        """Complete a stored unit computed with fewer metrics (`--metrics belief`) with `data`,
        which has all of them: its step rows are rewritten in one transaction and the trace
        keeps its id (and the flags and reviews on it). Returns the trace id; None when no
        stored trace of the unit lacks a metric of `data` (a concurrent writer filled it)."""
        columns, nan_mask = _step_columns(data)
        mask = _metrics_mask(columns)
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
                .values(metrics_mask=mask)
                .returning(Trace.id)
            ).scalar()
            if trace_id is None:
                return None
            conn.execute(sa.delete(steps).where(steps.c.trace_id == trace_id))
            _write_steps(conn, trace_id, columns, nan_mask)
        return int(trace_id)

    def _write_arrays(
        self, conn: sa.Connection, trace_id: int, arrays: list[dict[str, Any]]
    ) -> None:
        if arrays:
            conn.execute(sa.insert(TraceArray), [{"trace_id": trace_id, **a} for a in arrays])

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


def _write_steps(
    conn: sa.Connection,
    trace_id: int,
    columns: dict[str, np.ndarray],
    nan_mask: np.ndarray,
    table: str = steps.name,
) -> None:
    names = ["trace_id", "t", "nan_mask", *columns]
    length = len(nan_mask)
    dbapi = conn.connection.driver_connection
    assert dbapi is not None
    cursor = dbapi.cursor()
    try:
        if conn.dialect.name == "sqlite":
            marks = ", ".join("?" * len(names))
            sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})"
            rows = zip(
                repeat(trace_id),
                range(length),
                nan_mask.tolist(),
                *(col.tolist() for col in columns.values()),
                strict=False,
            )
            cursor.executemany(sql, rows)
        else:
            sql = f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)"
            with cursor.copy(sql) as copy:
                copy.write(_pg_binary_rows(trace_id, columns, nan_mask))
    finally:
        cursor.close()


def _pg_binary_rows(trace_id: int, columns: dict[str, np.ndarray], nan_mask: np.ndarray) -> bytes:
    """PostgreSQL binary COPY payload for the step rows: every row has the same layout (field
    count, then length + big-endian value per field), so numpy writes it in one go."""
    ints = ["trace_id", "t", "nan_mask"]
    fields: list[tuple[str, str]] = [("nfields", ">i2")]
    for name in ints:
        fields += [(f"len_{name}", ">i4"), (name, ">i4")]
    for name in columns:
        fields += [(f"len_{name}", ">i4"), (name, ">f8")]
    rows = np.empty(len(nan_mask), dtype=np.dtype(fields))
    rows["nfields"] = len(ints) + len(columns)
    for name in ints:
        rows[f"len_{name}"] = 4
    rows["trace_id"] = trace_id
    rows["t"] = np.arange(len(nan_mask))
    rows["nan_mask"] = nan_mask
    for name, col in columns.items():
        rows[f"len_{name}"] = 8
        rows[name] = col
    return _PG_COPY_HEADER + rows.tobytes() + _PG_COPY_TRAILER


def _step_columns(data: TraceData) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The trace's step columns (in `STEP_METRICS` order) and each step's NaN bits."""
    length = data.length
    present = [name for name in STEP_METRICS if name in data.metrics]
    columns = {name: np.asarray(data.metrics[name], dtype=np.float64) for name in present}
    for name, col in columns.items():
        assert col.shape == (length,), f"metric {name}: shape {col.shape}, expected ({length},)"
    nan_mask = np.zeros(length, dtype=np.int64)
    for name, col in columns.items():
        nan_mask |= np.isnan(col).astype(np.int64) << STEP_METRICS.index(name)
    return columns, nan_mask


def _metrics_mask(names: Iterable[str]) -> int:
    return sum(1 << STEP_METRICS.index(name) for name in names)


def _encode_arrays(data: TraceData) -> list[dict[str, Any]]:
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
        out.append(
            {"name": name, "dtype": dtype.str, "shape": list(value.shape), "data": value.tobytes()}
        )
    return out


def _finite_mean(col: np.ndarray | None) -> float | None:
    finite = None if col is None else col[np.isfinite(col)]
    return None if finite is None or not len(finite) else float(finite.mean())


def _finite_max(col: np.ndarray | None) -> float | None:
    finite = None if col is None else col[np.isfinite(col)]
    return None if finite is None or not len(finite) else float(finite.max())
