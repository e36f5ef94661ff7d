"""Access: API tokens, who a request acts as, webhooks and their deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

DELIVERY_STATES = ("pending", "delivered", "failed")


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    prefix: str
    created: datetime
    last_used: datetime | None
    revoked: datetime | None


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a token's name, or nobody (an open read)."""

    name: str | None  # the token's name; None for an anonymous (open) read
    via: Literal["bearer", "cookie", "anonymous"]


@dataclass(frozen=True)
class WebhookInfo:
    id: int
    url: str
    min_severity: str
    created_by: str
    after_flag_id: int
    active: bool
    created: datetime
    n_pending: int
    n_failed: int


@dataclass(frozen=True)
class DeliveryInfo:
    id: int
    webhook_id: int
    flag_id: int
    payload: dict[str, Any]
    state: str
    attempts: int
    next_attempt: datetime
    last_status: int | None
    last_error: str | None
    created: datetime
    delivered: datetime | None
