"""Tables of the server's access control and notifications: API tokens, webhooks, deliveries.

Tokens are stored as the sha256 of a random secret: the database never holds a credential that
works. `flag_id` of a delivery is a plain integer, not a foreign key: a delivery record (and its
failure) stays visible after its flag is deleted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from beliefscope.store.tables import Base, UTCDateTime, utcnow
from beliefscope.values.access import DELIVERY_STATES


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    """Who holds the token; written as the reviewer in flag history."""
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    """The secret's first characters, to tell tokens apart in listings."""
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked: Mapped[datetime | None] = mapped_column(UTCDateTime)


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
