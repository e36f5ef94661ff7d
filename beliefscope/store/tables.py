"""SQLAlchemy declarative models: the store's tables. ORM rows never leave `beliefscope.store`.

Per-step metrics are one float column each (`STEP_METRICS`, in `values.traces.METRICS`
order). NaN cannot be stored portably (SQLite turns it into NULL), so every step row carries
`nan_mask`, bit i set when metric i is NaN; NULL without the bit means "not available" (e.g. a
model without a reward head). Infinities are stored natively by both backends. The writer hands
NaN to the driver as is and the read layer restores NaN from the mask on both backends: one path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from beliefscope.values.jobs import JOB_STATES
from beliefscope.values.traces import METRICS

STEP_METRICS: tuple[str, ...] = (
    "kl",
    "kl_dyn",
    "kl_rep",
    "correction",
    "prior_entropy",
    "post_entropy",
    "recon_error",
    "pred_error",
    "reward_pred",
    "reward",
    "cont_pred",
    "cont",
    "deter_norm",
    "deter_delta",
    "openloop_error",
    "belief_jump",  # 0004
    "reward_error",  # 0005
)
"""Step columns; position = bit in `steps.nan_mask` and `traces.metrics_mask`. Append only: a new
metric needs a migration adding its column, and must never reuse an existing bit."""

assert set(STEP_METRICS) == set(METRICS), "values.traces.METRICS changed: add a migration"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both backends (SQLite stores naive text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    logdir: Mapped[str] = mapped_column(sa.Text)
    format: Mapped[str | None] = mapped_column(sa.String(64))
    family: Mapped[str | None] = mapped_column(sa.String(64))
    replay_dirs: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    """Replay directories ingested for this run (outside `logdir` too): the server may read
    their frames, since ingest (an operator, or the API within data roots) chose them."""
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (sa.UniqueConstraint("run_id", "content_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int | None] = mapped_column(sa.BigInteger)
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    format: Mapped[str] = mapped_column(sa.String(64))
    family: Mapped[str | None] = mapped_column(sa.String(64))
    config: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    source_path: Mapped[str] = mapped_column(sa.Text)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Episode(Base):
    __tablename__ = "episodes"
    __table_args__ = (sa.UniqueConstraint("run_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(500))
    format: Mapped[str] = mapped_column(sa.String(64))
    source_path: Mapped[str] = mapped_column(sa.Text)
    length: Mapped[int] = mapped_column(sa.Integer)
    episode_return: Mapped[float | None] = mapped_column("return", sa.Double)
    has_truth: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    truth_summary: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    locator: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    """What the replay format needs besides the path to find the episode again (part, extra)."""
    fingerprint: Mapped[str | None] = mapped_column(sa.String(64))
    """`Episode.fingerprint`: matched against a checkpoint's `train_episodes`."""
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Trace(Base):
    """One unit of ingest work: (checkpoint, episode, trace variant, posterior).

    `posterior` is part of the unit: a sampled trace (`sample:SEED`) must not be skipped because
    the deterministic `mode` trace of the same variant exists. The variant's column is named
    `probe`, as it was before trace variants had their own word.
    """

    __tablename__ = "traces"
    __table_args__ = (sa.UniqueConstraint("checkpoint_id", "episode_id", "probe", "posterior"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("checkpoints.id", ondelete="CASCADE"))
    episode_id: Mapped[int] = mapped_column(
        sa.ForeignKey("episodes.id", ondelete="CASCADE"), index=True
    )
    variant: Mapped[str] = mapped_column("probe", sa.String(100))
    posterior: Mapped[str] = mapped_column(sa.String(50))
    length: Mapped[int] = mapped_column(sa.Integer)
    metrics_mask: Mapped[int] = mapped_column(sa.Integer)
    """Bit i set when STEP_METRICS[i] was computed for this trace."""
    kl_mean: Mapped[float | None] = mapped_column(sa.Double)
    kl_max: Mapped[float | None] = mapped_column(sa.Double)
    correction_mean: Mapped[float | None] = mapped_column(sa.Double)
    correction_max: Mapped[float | None] = mapped_column(sa.Double)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


steps = sa.Table(
    "steps",
    Base.metadata,
    sa.Column("trace_id", sa.Integer, primary_key=True),
    sa.Column("t", sa.Integer, primary_key=True),
    sa.Column("nan_mask", sa.Integer, nullable=False, server_default="0"),
    *(sa.Column(name, sa.Double, nullable=True) for name in STEP_METRICS),
    sqlite_with_rowid=False,
)
"""Per-step rows, written and read in bulk through Core only (no ORM class: millions of rows).

`trace_id` has no foreign key on purpose: the per-row check halves bulk-insert speed on both
backends (measured: PostgreSQL COPY 60k vs 115k rows/s). The writer only ever inserts steps in
the transaction that inserts their trace; whoever deletes traces deletes their steps in the same
transaction (`trace_arrays` keeps its cascading key: a few rows per trace)."""


class TraceArray(Base):
    """An n-d per-step array of a trace: `kl_groups` (T, G), `post_probs`/`prior_probs`
    (T, g, K) as float16, and variant or probe extras as `extra:<name>` in their own dtype."""

    __tablename__ = "trace_arrays"

    trace_id: Mapped[int] = mapped_column(
        sa.ForeignKey("traces.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    dtype: Mapped[str] = mapped_column(sa.String(16))
    shape: Mapped[list[int]] = mapped_column(sa.JSON)
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        sa.CheckConstraint(sa.column("state").in_(JOB_STATES), name="state"),
        sa.Index(None, "run_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(50))
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("runs.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(sa.String(16), default="queued")
    args: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    done: Mapped[int] = mapped_column(sa.Integer, default=0)
    total: Mapped[int] = mapped_column(sa.Integer, default=0)
    """Units of work (traces: checkpoints x episodes x variants) done and planned."""
    checkpoints_done: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    checkpoints_total: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    episodes_total: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    """The plan's shape (0006), for progress a user reads: checkpoints done of planned, each
    over this many episodes."""
    message: Mapped[str | None] = mapped_column(sa.Text)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat: Mapped[datetime | None] = mapped_column(UTCDateTime)


class JobError(Base):
    __tablename__ = "job_errors"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    unit: Mapped[str] = mapped_column(sa.Text)
    file: Mapped[str | None] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.Text)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def all_metadata() -> sa.MetaData:
    """`Base.metadata` with every table module of the store loaded: other areas keep their
    tables in `beliefscope/store/<area>_tables.py` on the same `Base` (see migrations/README)."""
    import importlib
    import pkgutil

    import beliefscope.store as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name.endswith("tables"):
            importlib.import_module(f"{package.__name__}.{module.name}")
    return Base.metadata
