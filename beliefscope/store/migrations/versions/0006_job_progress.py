"""Ingest progress in the plan's terms: checkpoints done of planned, and episodes per
checkpoint, on each job.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS = ("checkpoints_done", "checkpoints_total", "episodes_total")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
