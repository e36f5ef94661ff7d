"""Access control and notifications: API tokens, webhooks, webhook deliveries.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from beliefscope.store.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("last_used", UTCDateTime),
        sa.Column("revoked", UTCDateTime),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("name", name="uq_api_tokens_name"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_table(
        "webhooks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("min_severity", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("after_flag_id", sa.Integer, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhooks"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("webhook_id", sa.Integer, nullable=False),
        sa.Column("flag_id", sa.Integer, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt", UTCDateTime, nullable=False),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("delivered", UTCDateTime),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            name="fk_webhook_deliveries_webhook_id_webhooks",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "webhook_id", "flag_id", name="uq_webhook_deliveries_webhook_id_flag_id"
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'failed')", name="ck_webhook_deliveries_state"
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_state_next_attempt",
        "webhook_deliveries",
        ["state", "next_attempt"],
    )


def downgrade() -> None:
    for table in ("webhook_deliveries", "webhooks", "api_tokens"):
        op.drop_table(table)
