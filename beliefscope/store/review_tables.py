"""Tables of the review workflow: flag rules (versioned), flags, their history, scores, probe
summaries, and the metric columns re-flagging reads.

Flag ids only ever grow (`AUTOINCREMENT` on SQLite, a sequence on PostgreSQL): a webhook that
has seen flags up to id N must never meet a new flag that reuses a deleted id below it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from beliefscope.store.tables import Base, UTCDateTime, utcnow
from beliefscope.values.review import FLAG_SOURCES, FLAG_STATES


class ReviewRule(Base):
    """One version of a named rule; a changed rule is a new row with the next version."""

    __tablename__ = "review_rules"
    __table_args__ = (sa.UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    version: Mapped[int] = mapped_column(sa.Integer)
    metric: Mapped[str] = mapped_column(sa.String(64))
    mode: Mapped[str] = mapped_column(sa.String(16))
    threshold: Mapped[float] = mapped_column(sa.Double)
    floor: Mapped[float | None] = mapped_column(sa.Double)
    normalise: Mapped[str] = mapped_column(sa.String(16))
    min_duration: Mapped[int] = mapped_column(sa.Integer)
    merge_gap: Mapped[int] = mapped_column(sa.Integer)
    severity: Mapped[str] = mapped_column(sa.String(16))
    variant: Mapped[str] = mapped_column("probe", sa.String(100))
    """The trace variant the rule reads (column `probe`, named before variants had a word)."""
    enabled: Mapped[bool] = mapped_column(sa.Boolean)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(sa.String(100))


class Flag(Base):
    """A segment [t0, t1] of one trace that deserves a look, from a rule or a person.

    `reviewed` is set by the first human edit: from then on a rule re-run may move the
    segment's bounds when it still finds it, but never deletes the flag; when the rule no longer
    finds it the flag stays, marked `stale`.
    """

    __tablename__ = "flags"
    __table_args__ = (
        sa.CheckConstraint(sa.column("state").in_(FLAG_STATES), name="state"),
        sa.CheckConstraint(sa.column("source").in_(FLAG_SOURCES), name="source"),
        sa.CheckConstraint("t0 <= t1", name="span"),
        sa.Index(None, "trace_id", "rule_name"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    trace_id: Mapped[int] = mapped_column(sa.ForeignKey("traces.id", ondelete="CASCADE"))
    t0: Mapped[int] = mapped_column(sa.Integer)
    t1: Mapped[int] = mapped_column(sa.Integer)
    source: Mapped[str] = mapped_column(sa.String(16))
    rule_name: Mapped[str | None] = mapped_column(sa.String(100))
    rule_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("review_rules.id", ondelete="SET NULL")
    )
    peak: Mapped[float | None] = mapped_column(sa.Double)
    peak_t: Mapped[int | None] = mapped_column(sa.Integer)
    severity: Mapped[str] = mapped_column(sa.String(16))
    state: Mapped[str] = mapped_column(sa.String(16), default="open")
    category: Mapped[str | None] = mapped_column(sa.String(16))
    tags: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    notes: Mapped[str] = mapped_column(sa.Text, default="")
    reviewed: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    stale: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(sa.String(100))
    deleted: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Set when a person deleted the flag: it is hidden from every list and read but kept,
    with its history, so an admin can restore it."""
    deleted_by: Mapped[str | None] = mapped_column(sa.String(100))


class FlagHistory(Base):
    """Who changed what on a flag, and when: `changes` maps a field to [old, new]."""

    __tablename__ = "flag_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    flag_id: Mapped[int] = mapped_column(sa.ForeignKey("flags.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    who: Mapped[str] = mapped_column(sa.String(100))
    action: Mapped[str] = mapped_column(sa.String(32))
    changes: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)


class ReviewScore(Base):
    """Flags scored against ground truth for one checkpoint (NULL where undefined)."""

    __tablename__ = "review_scores"

    id: Mapped[int] = mapped_column(primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(
        sa.ForeignKey("checkpoints.id", ondelete="CASCADE"), index=True
    )
    rules: Mapped[list[str]] = mapped_column(sa.JSON)
    """`name@version` of the rules whose flags were scored."""
    slip_recall: Mapped[float | None] = mapped_column(sa.Double)
    reappearance_recall: Mapped[float | None] = mapped_column(sa.Double)
    precision: Mapped[float | None] = mapped_column(sa.Double)
    slip_auc: Mapped[float | None] = mapped_column(sa.Double)
    episode_ap: Mapped[float | None] = mapped_column(sa.Double)
    slip_events: Mapped[int] = mapped_column(sa.Integer)
    plain_events: Mapped[int] = mapped_column(sa.Integer)
    flags: Mapped[int] = mapped_column(sa.Integer)
    episodes: Mapped[int] = mapped_column(sa.Integer)
    slip_episodes: Mapped[int] = mapped_column(sa.Integer)
    slip_precision: Mapped[float | None] = mapped_column(sa.Double)
    plain_flagged: Mapped[float | None] = mapped_column(sa.Double)
    intervals: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    """Figure name -> [low, high] 95% bootstrap interval."""
    split: Mapped[str] = mapped_column(sa.String(16), default="all")
    """Which of the checkpoint's episodes were scored: `all`, `train` (its training replay)
    or `held-out` (the rest)."""
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MetricColumn(Base):
    """One metric of one trace as a float64 blob (NaN kept): what re-flagging reads.

    Derived from `steps` the first time a rule reads the trace; a trace is never rewritten
    once stored, so the copy cannot go out of date, and it goes with its trace (cascade).
    Reading a column of a million steps from the wide step rows costs seconds; from these
    blobs, milliseconds.
    """

    __tablename__ = "metric_columns"

    trace_id: Mapped[int] = mapped_column(
        sa.ForeignKey("traces.id", ondelete="CASCADE"), primary_key=True
    )
    metric: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)


class ProbeSummary(Base):
    """A probe's per-checkpoint result that is no per-step trace: the open-loop horizon curve,
    belief-decoding error against steps since occlusion. `data` holds the curves as lists."""

    __tablename__ = "probe_summaries"
    __table_args__ = (sa.UniqueConstraint("checkpoint_id", "probe"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("checkpoints.id", ondelete="CASCADE"))
    probe: Mapped[str] = mapped_column(sa.String(100))
    data: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
