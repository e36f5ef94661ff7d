"""Access: API tokens and their scopes, sessions, who a request acts as, the activity log,
webhooks and their deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

DELIVERY_STATES = ("pending", "delivered", "failed")

Scope = Literal["read", "review", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "review", "admin")
"""What a token may do, each including the ones before it: `read` everything readable,
`review` also flags, notes and reviews, `admin` also rules, webhooks, tokens, ingest jobs and
deletions by others."""


def allows(have: Scope | None, need: Scope) -> bool:
    """Whether a principal of scope `have` (None: anonymous) may do what needs `need`."""
    return have is not None and SCOPES.index(have) >= SCOPES.index(need)


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    prefix: str
    scope: Scope
    created: datetime
    expires: datetime | None
    last_used: datetime | None
    revoked: datetime | None

    def state(self, now: datetime) -> Literal["live", "expired", "revoked"]:
        if self.revoked is not None:
            return "revoked"
        return "expired" if self.expires is not None and self.expires <= now else "live"


@dataclass(frozen=True)
class SessionInfo:
    """A browser session: a random id in the login cookie standing for one token, so the
    cookie never holds the token and a sign-out ends the session on the server."""

    id: int
    token: TokenInfo
    created: datetime
    expires: datetime


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a token's name and scope, or nobody (an open read)."""

    name: str | None  # the token's name; None for an anonymous (open) read
    via: Literal["bearer", "cookie", "anonymous"]
    scope: Scope | None = None  # None for an anonymous read


@dataclass(frozen=True)
class ActivityEntry:
    """One state change: who did what to which thing, when (the append-only activity log)."""

    id: int
    at: datetime
    who: str
    action: str  # e.g. "flag.review", "rule.edit", "token.create", "webhook.delete"
    target: str  # e.g. "flag:3", "rule:kl-spike", "token:alice"
    details: dict[str, Any]


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
    deleted: datetime | None = None
    deleted_by: str | None = None


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


@dataclass(frozen=True)
class DeliveryTarget:
    """Where and how to send one claimed delivery: its hook's URL and signing secret."""

    delivery: DeliveryInfo
    url: str
    secret: str
