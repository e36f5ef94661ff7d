"""Token scopes and expiry, browser sessions, the append-only activity log, signed webhooks
and soft deletion of flags and webhooks.

Tokens from before scopes become `admin`: they could do everything, and keep working.
Webhooks from before signatures get a fresh signing secret (an admin reads it with
`POST /api/v1/webhooks/{id}/secret`, which replaces it).

SQLite: only `api_tokens` (which nothing references yet) is rebuilt; the other tables only
gain columns, because rebuilding a table drops the old one, and with foreign keys on that
deletes its children (a webhook's deliveries) by cascade.

Revision ID: 0007
Revises: 0006
Create Date: 2027-01-10
"""

from __future__ import annotations

import base64
import secrets

import sqlalchemy as sa
from alembic import op

from beliefscope.store.tables import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_REFUSE = "the activity log is append-only"


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.add_column("api_tokens", sa.Column("scope", sa.String(16), nullable=True))
    op.add_column("api_tokens", sa.Column("expires", UTCDateTime, nullable=True))
    op.execute("UPDATE api_tokens SET scope = 'admin'")
    with op.batch_alter_table("api_tokens") as batch:
        batch.alter_column("scope", existing_type=sa.String(16), nullable=False)
        batch.create_check_constraint("ck_api_tokens_scope", "scope IN ('read', 'review', 'admin')")

    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token_id", sa.Integer, nullable=False),
        sa.Column("session_hash", sa.String(64), nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("expires", UTCDateTime, nullable=False),
        sa.Column("revoked", UTCDateTime),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["api_tokens.id"],
            name="fk_sessions_token_id_api_tokens",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("session_hash", name="uq_sessions_session_hash"),
    )
    op.create_index("ix_sessions_token_id", "sessions", ["token_id"])

    op.create_table(
        "activity",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("who", sa.String(100), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_activity"),
        sqlite_autoincrement=True,
    )
    for column in ("at", "action", "target"):
        op.create_index(f"ix_activity_{column}", "activity", [column])
    if sqlite:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER activity_no_{event.lower()} BEFORE {event} ON activity "
                f"BEGIN SELECT RAISE(ABORT, '{_REFUSE}'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION activity_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{_REFUSE}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER activity_append_only BEFORE UPDATE OR DELETE ON activity "
            "FOR EACH ROW EXECUTE FUNCTION activity_append_only()"
        )
        op.execute(
            "CREATE TRIGGER activity_no_truncate BEFORE TRUNCATE ON activity "
            "FOR EACH STATEMENT EXECUTE FUNCTION activity_append_only()"
        )

    op.add_column(
        "webhooks", sa.Column("secret", sa.String(100), nullable=False, server_default="")
    )
    op.add_column("webhooks", sa.Column("deleted", UTCDateTime, nullable=True))
    op.add_column("webhooks", sa.Column("deleted_by", sa.String(100), nullable=True))
    bind = op.get_bind()
    for (hook_id,) in bind.execute(sa.text("SELECT id FROM webhooks")).all():
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        bind.execute(
            sa.text("UPDATE webhooks SET secret = :s WHERE id = :i"), {"s": secret, "i": hook_id}
        )
    if not sqlite:  # SQLite cannot drop a default without rebuilding the table (see above)
        op.alter_column("webhooks", "secret", server_default=None)

    op.add_column("flags", sa.Column("deleted", UTCDateTime, nullable=True))
    op.add_column("flags", sa.Column("deleted_by", sa.String(100), nullable=True))


def downgrade() -> None:
    # plain DROP COLUMN (SQLite >= 3.35): a rebuild would cascade-delete history and deliveries
    for table, columns in (("flags", ()), ("webhooks", ("secret",))):
        for column in ("deleted_by", "deleted", *columns):
            op.drop_column(table, column)
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP TABLE activity")
        op.execute("DROP FUNCTION activity_append_only()")
    else:
        op.drop_table("activity")
    op.drop_table("sessions")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_constraint("ck_api_tokens_scope", type_="check")
        batch.drop_column("expires")
        batch.drop_column("scope")
