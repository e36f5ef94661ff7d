"""Tables of the server's access control and notifications: API tokens, browser sessions, the
activity log, webhooks and their deliveries.

Tokens and sessions are stored as the sha256 of a random secret: the database never holds a
credential that works. A webhook's signing secret is the exception (signing needs it), and it
never leaves the store except to sign and once, at creation, to the admin who made it.
`flag_id` of a delivery is a plain integer, not a foreign key: a delivery record (and its
failure) stays visible after its flag is deleted. The activity log has no foreign keys either:
its rows outlive what they name, and triggers (migration 0007) refuse to change or delete them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from beliefscope.store.tables import Base, UTCDateTime, utcnow
from beliefscope.values.access import DELIVERY_STATES, SCOPES


class ApiToken(Base):
    __tablename__ = "api_tokens"
    __table_args__ = (sa.CheckConstraint(sa.column("scope").in_(SCOPES), name="scope"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    """Who holds the token; written as the reviewer in flag history."""
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    """The secret's first characters, to tell tokens apart in listings."""
    scope: Mapped[str] = mapped_column(sa.String(16))
    """read, review or admin (`values.access.SCOPES`); tokens from before scopes are admin."""
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BrowserSession(Base):
    """A signed-in browser: the cookie holds a random session id, this row its hash. It acts
    as its token (and dies with it) until it expires or is signed out."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(
        sa.ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True
    )
    session_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Activity(Base):
    """One state change: who did what to which thing, when. Append-only."""

    __tablename__ = "activity"
    __table_args__ = (sa.Index(None, "target"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    who: Mapped[str] = mapped_column(sa.String(100))
    action: Mapped[str] = mapped_column(sa.String(32), index=True)
    target: Mapped[str] = mapped_column(sa.String(200))
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)


class Webhook(Base):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(sa.Text)
    min_severity: Mapped[str] = mapped_column(sa.String(16))
    created_by: Mapped[str] = mapped_column(sa.String(100))
    after_flag_id: Mapped[int] = mapped_column(sa.Integer, default=0)
    """Flags with a larger id are new to this hook (set to the newest flag on registration, so
    a hook is not flooded with the history)."""
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    secret: Mapped[str] = mapped_column(sa.String(100))
    """The Standard Webhooks signing secret (`whsec_` + base64 of the key)."""
    deleted: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Set when deleted: the hook stops and is hidden, its deliveries kept (restorable)."""
    deleted_by: Mapped[str | None] = mapped_column(sa.String(100))


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("webhook_id", "flag_id"),
        sa.CheckConstraint(sa.column("state").in_(DELIVERY_STATES), name="state"),
        sa.Index(None, "state", "next_attempt"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(sa.ForeignKey("webhooks.id", ondelete="CASCADE"))
    flag_id: Mapped[int] = mapped_column(sa.Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    state: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_status: Mapped[int | None] = mapped_column(sa.Integer)
    """HTTP status of the last attempt (None: no answer, see `last_error`)."""
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered: Mapped[datetime | None] = mapped_column(UTCDateTime)
