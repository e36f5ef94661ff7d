"""Initial schema: runs, checkpoints, episodes, traces, steps, trace arrays, jobs, job errors.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from beliefscope.store.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copy of the metric columns at this revision (tables.STEP_METRICS may grow later).
METRICS_0001 = (
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
)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("logdir", sa.Text, nullable=False),
        sa.Column("format", sa.String(64)),
        sa.Column("family", sa.String(64)),
        sa.Column("replay_dirs", sa.JSON, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.UniqueConstraint("name", name="uq_runs_name"),
    )
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("step", sa.BigInteger),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("format", sa.String(64), nullable=False),
        sa.Column("family", sa.String(64)),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("source_path", sa.Text, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_checkpoints"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_checkpoints_run_id_runs", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("run_id", "content_hash", name="uq_checkpoints_run_id_content_hash"),
    )
    op.create_table(
        "episodes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("key", sa.String(500), nullable=False),
        sa.Column("format", sa.String(64), nullable=False),
        sa.Column("source_path", sa.Text, nullable=False),
        sa.Column("length", sa.Integer, nullable=False),
        sa.Column("return", sa.Double),
        sa.Column("has_truth", sa.Boolean, nullable=False),
        sa.Column("truth_summary", sa.JSON, nullable=False),
        sa.Column("locator", sa.JSON, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_episodes"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_episodes_run_id_runs", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("run_id", "key", name="uq_episodes_run_id_key"),
    )
    op.create_table(
        "traces",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("checkpoint_id", sa.Integer, nullable=False),
        sa.Column("episode_id", sa.Integer, nullable=False),
        sa.Column("probe", sa.String(100), nullable=False),
        sa.Column("posterior", sa.String(50), nullable=False),
        sa.Column("length", sa.Integer, nullable=False),
        sa.Column("metrics_mask", sa.Integer, nullable=False),
        sa.Column("kl_mean", sa.Double),
        sa.Column("kl_max", sa.Double),
        sa.Column("correction_mean", sa.Double),
        sa.Column("correction_max", sa.Double),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_traces"),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name="fk_traces_checkpoint_id_checkpoints",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["episode_id"],
            ["episodes.id"],
            name="fk_traces_episode_id_episodes",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "checkpoint_id",
            "episode_id",
            "probe",
            "posterior",
            name="uq_traces_checkpoint_id_episode_id_probe_posterior",
        ),
    )
    op.create_index("ix_traces_episode_id", "traces", ["episode_id"])
    op.create_table(
        "steps",
        sa.Column("trace_id", sa.Integer, nullable=False),
        sa.Column("t", sa.Integer, nullable=False),
        sa.Column("nan_mask", sa.Integer, nullable=False, server_default="0"),
        *(sa.Column(name, sa.Double) for name in METRICS_0001),
        sa.PrimaryKeyConstraint("trace_id", "t", name="pk_steps"),  # no FK: see tables.steps
        sqlite_with_rowid=False,
    )
    op.create_table(
        "trace_arrays",
        sa.Column("trace_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("dtype", sa.String(16), nullable=False),
        sa.Column("shape", sa.JSON, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("trace_id", "name", name="pk_trace_arrays"),
        sa.ForeignKeyConstraint(
            ["trace_id"], ["traces.id"], name="fk_trace_arrays_trace_id_traces", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("run_id", sa.Integer),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("args", sa.JSON, nullable=False),
        sa.Column("done", sa.Integer, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("started", UTCDateTime),
        sa.Column("finished", UTCDateTime),
        sa.Column("heartbeat", UTCDateTime),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_jobs_run_id_runs", ondelete="SET NULL"
        ),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'done', 'failed')", name="ck_jobs_state"
        ),
    )
    op.create_index("ix_jobs_run_id_id", "jobs", ["run_id", "id"])
    op.create_table(
        "job_errors",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("job_id", sa.Integer, nullable=False),
        sa.Column("unit", sa.Text, nullable=False),
        sa.Column("file", sa.Text),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_job_errors"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_job_errors_job_id_jobs", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_job_errors_job_id", "job_errors", ["job_id"])


def downgrade() -> None:
    for table in (
        "job_errors",
        "jobs",
        "trace_arrays",
        "steps",
        "traces",
        "episodes",
        "checkpoints",
        "runs",
    ):
        op.drop_table(table)
