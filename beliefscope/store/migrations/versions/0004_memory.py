"""Belief jump (a step metric of decode traces); episode fingerprints (which checkpoints
trained on an episode); scores split into training and held-out
episodes, with slip precision, plain reappearances flagged and bootstrap intervals.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("belief_jump", sa.Double, nullable=True))
    with op.batch_alter_table("episodes") as batch:
        batch.add_column(sa.Column("fingerprint", sa.String(64), nullable=True))
    with op.batch_alter_table("review_scores") as batch:
        batch.add_column(sa.Column("slip_precision", sa.Double, nullable=True))
        batch.add_column(sa.Column("plain_flagged", sa.Double, nullable=True))
        batch.add_column(sa.Column("intervals", sa.JSON, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("split", sa.String(16), nullable=False, server_default="all"))


def downgrade() -> None:
    with op.batch_alter_table("review_scores") as batch:
        for name in ("split", "intervals", "plain_flagged", "slip_precision"):
            batch.drop_column(name)
    with op.batch_alter_table("episodes") as batch:
        batch.drop_column("fingerprint")
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("belief_jump")
