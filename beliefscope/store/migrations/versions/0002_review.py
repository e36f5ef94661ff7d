"""Review workflow: flag rules (versioned), flags, flag history, scores, probe summaries,
metric columns (re-flagging's bulk copy of step metrics).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from beliefscope.store.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_rules",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("threshold", sa.Double, nullable=False),
        sa.Column("floor", sa.Double),
        sa.Column("normalise", sa.String(16), nullable=False),
        sa.Column("min_duration", sa.Integer, nullable=False),
        sa.Column("merge_gap", sa.Integer, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("probe", sa.String(100), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_review_rules"),
        sa.UniqueConstraint("name", "version", name="uq_review_rules_name_version"),
    )
    op.create_table(
        "flags",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("trace_id", sa.Integer, nullable=False),
        sa.Column("t0", sa.Integer, nullable=False),
        sa.Column("t1", sa.Integer, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("rule_name", sa.String(100)),
        sa.Column("rule_id", sa.Integer),
        sa.Column("peak", sa.Double),
        sa.Column("peak_t", sa.Integer),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("category", sa.String(16)),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("reviewed", sa.Boolean, nullable=False),
        sa.Column("stale", sa.Boolean, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("updated", UTCDateTime, nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_flags"),
        sa.ForeignKeyConstraint(
            ["trace_id"], ["traces.id"], name="fk_flags_trace_id_traces", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["review_rules.id"],
            name="fk_flags_rule_id_review_rules",
            ondelete="SET NULL",
        ),
        sa.CheckConstraint("state IN ('open', 'confirmed', 'dismissed')", name="ck_flags_state"),
        sa.CheckConstraint("source IN ('rule', 'manual')", name="ck_flags_source"),
        sa.CheckConstraint("t0 <= t1", name="ck_flags_span"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_flags_trace_id_rule_name", "flags", ["trace_id", "rule_name"])
    op.create_table(
        "flag_history",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("flag_id", sa.Integer, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("who", sa.String(100), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("changes", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_flag_history"),
        sa.ForeignKeyConstraint(
            ["flag_id"], ["flags.id"], name="fk_flag_history_flag_id_flags", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_flag_history_flag_id", "flag_history", ["flag_id"])
    op.create_table(
        "review_scores",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("checkpoint_id", sa.Integer, nullable=False),
        sa.Column("rules", sa.JSON, nullable=False),
        sa.Column("slip_recall", sa.Double),
        sa.Column("reappearance_recall", sa.Double),
        sa.Column("precision", sa.Double),
        sa.Column("slip_auc", sa.Double),
        sa.Column("episode_ap", sa.Double),
        sa.Column("slip_events", sa.Integer, nullable=False),
        sa.Column("plain_events", sa.Integer, nullable=False),
        sa.Column("flags", sa.Integer, nullable=False),
        sa.Column("episodes", sa.Integer, nullable=False),
        sa.Column("slip_episodes", sa.Integer, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_review_scores"),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name="fk_review_scores_checkpoint_id_checkpoints",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_review_scores_checkpoint_id", "review_scores", ["checkpoint_id"])
    op.create_table(
        "metric_columns",
        sa.Column("trace_id", sa.Integer, nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("trace_id", "metric", name="pk_metric_columns"),
        sa.ForeignKeyConstraint(
            ["trace_id"],
            ["traces.id"],
            name="fk_metric_columns_trace_id_traces",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "probe_summaries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("checkpoint_id", sa.Integer, nullable=False),
        sa.Column("probe", sa.String(100), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_probe_summaries"),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name="fk_probe_summaries_checkpoint_id_checkpoints",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "checkpoint_id", "probe", name="uq_probe_summaries_checkpoint_id_probe"
        ),
    )


def downgrade() -> None:
    for table in (
        "probe_summaries",
        "metric_columns",
        "review_scores",
        "flag_history",
        "flags",
        "review_rules",
    ):
        op.drop_table(table)
