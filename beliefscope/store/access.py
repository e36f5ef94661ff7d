"""Reads and writes of API tokens, webhooks and webhook deliveries (`store.access`).

A token's secret is shown once, when it is created; only its sha256 is stored, and looking a
token up hashes the presented secret and compares in the database (an indexed equality on a
hash leaks nothing useful about the secret through timing).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any, cast

import sqlalchemy as sa

from beliefscope.errors import BadInputError, NotFoundError
from beliefscope.store.access_tables import ApiToken, Webhook, WebhookDelivery
from beliefscope.store.engine import Surface
from beliefscope.store.tables import utcnow
from beliefscope.values.access import DeliveryInfo, TokenInfo, WebhookInfo
from beliefscope.values.page import Page

TOKEN_PREFIX = "bsk_"
_TOKENS = cast(sa.Table, ApiToken.__table__)
_HOOKS = cast(sa.Table, Webhook.__table__)
_DELIVERIES = cast(sa.Table, WebhookDelivery.__table__)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class AccessStore(Surface):
    """Tokens, webhooks and deliveries of one store."""

    # -- tokens -----------------------------------------------------------------------------

    def create_token(self, name: str) -> tuple[TokenInfo, str]:
        """A new token for `name`; returns it with the secret (the only time it is visible)."""
        name = name.strip()
        if not name or len(name) > 100:
            raise BadInputError("token name must be 1-100 characters")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        table = _TOKENS
        with self._store.connect(write=True) as conn:
            if conn.execute(sa.select(table.c.id).where(table.c.name == name)).first():
                raise BadInputError(
                    f"a token named {name!r} exists; revoke it or pick another name"
                )
            conn.execute(
                sa.insert(table).values(
                    name=name, token_hash=hash_secret(secret), prefix=secret[:10], created=utcnow()
                )
            )
            row = conn.execute(sa.select(table).where(table.c.name == name)).one()
        return _token(row), secret

    def list_tokens(self) -> list[TokenInfo]:
        table = _TOKENS
        with self._store.connect() as conn:
            return [_token(r) for r in conn.execute(sa.select(table).order_by(table.c.id))]

    def revoke_token(self, name: str) -> TokenInfo:
        """Revoke the live token named `name` (the row stays, for the record)."""
        table = _TOKENS
        with self._store.connect(write=True) as conn:
            row = conn.execute(
                sa.select(table).where(table.c.name == name, table.c.revoked.is_(None))
            ).first()
            if row is None:
                raise NotFoundError(f"no live token named {name!r}")
            conn.execute(sa.update(table).where(table.c.id == row.id).values(revoked=utcnow()))
            row = conn.execute(sa.select(table).where(table.c.id == row.id)).one()
        return _token(row)

    def token_for_secret(self, secret: str) -> TokenInfo | None:
        """The live token whose secret this is, or None."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            return None
        table = _TOKENS
        with self._store.connect() as conn:
            row = conn.execute(
                sa.select(table).where(
                    table.c.token_hash == hash_secret(secret), table.c.revoked.is_(None)
                )
            ).first()
        return None if row is None else _token(row)

    # -- webhooks ---------------------------------------------------------------------------

    def create_webhook(
        self, *, url: str, min_severity: str, created_by: str, after_flag_id: int
    ) -> WebhookInfo:
        table = _HOOKS
        with self._store.connect(write=True) as conn:
            new_id = conn.execute(
                sa.insert(table)
                .values(
                    url=url,
                    min_severity=min_severity,
                    created_by=created_by,
                    after_flag_id=after_flag_id,
                    active=True,
                    created=utcnow(),
                )
                .returning(table.c.id)
            ).scalar_one()
        return self.get_webhook(new_id)

    def get_webhook(self, webhook_id: int) -> WebhookInfo:
        with self._store.connect() as conn:
            row = conn.execute(_webhook_select().where(_HOOKS.c.id == webhook_id)).first()
        if row is None:
            raise NotFoundError(f"no webhook {webhook_id}")
        return _webhook(row)

    def list_webhooks(
        self, *, limit: int = 100, offset: int = 0, active: bool | None = None
    ) -> Page[WebhookInfo]:
        table = _HOOKS
        where = [] if active is None else [table.c.active.is_(active)]
        with self._store.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(table).where(*where)
            ).scalar_one()
            rows = conn.execute(
                _webhook_select().where(*where).order_by(table.c.id).limit(limit).offset(offset)
            )
            return Page(tuple(_webhook(r) for r in rows), total, limit, offset)

    def delete_webhook(self, webhook_id: int) -> None:
        table = _HOOKS
        with self._store.connect(write=True) as conn:
            if conn.execute(sa.delete(table).where(table.c.id == webhook_id)).rowcount == 0:
                raise NotFoundError(f"no webhook {webhook_id}")

    def advance_webhook(
        self, webhook_id: int, after_flag_id: int, payloads: dict[int, dict[str, Any]]
    ) -> int:
        """Queue one delivery per flag in `payloads` (flag id -> JSON body) and move the hook's
        cursor to `after_flag_id`, in one transaction; returns how many were queued (a flag
        already queued for this hook is skipped)."""
        hooks, deliveries = _HOOKS, _DELIVERIES
        now = utcnow()
        with self._store.connect(write=True) as conn:
            done = set(
                conn.execute(
                    sa.select(deliveries.c.flag_id).where(
                        deliveries.c.webhook_id == webhook_id,
                        deliveries.c.flag_id.in_(list(payloads)),
                    )
                ).scalars()
            )
            rows = [
                {
                    "webhook_id": webhook_id,
                    "flag_id": flag_id,
                    "payload": body,
                    "state": "pending",
                    "attempts": 0,
                    "next_attempt": now,
                    "created": now,
                }
                for flag_id, body in payloads.items()
                if flag_id not in done
            ]
            if rows:
                conn.execute(sa.insert(deliveries), rows)
            conn.execute(
                sa.update(hooks).where(hooks.c.id == webhook_id).values(after_flag_id=after_flag_id)
            )
        return len(rows)

    # -- deliveries -------------------------------------------------------------------------

    def list_deliveries(
        self,
        *,
        webhook_id: int | None = None,
        state: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[DeliveryInfo]:
        table = _DELIVERIES
        where = []
        if webhook_id is not None:
            where.append(table.c.webhook_id == webhook_id)
        if state is not None:
            where.append(table.c.state == state)
        with self._store.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(table).where(*where)
            ).scalar_one()
            rows = conn.execute(
                sa.select(table)
                .where(*where)
                .order_by(table.c.id.desc())
                .limit(limit)
                .offset(offset)
            )
            return Page(tuple(_delivery(r) for r in rows), total, limit, offset)

    def due_deliveries(self, *, limit: int = 50) -> list[tuple[DeliveryInfo, str]]:
        """Pending deliveries whose next attempt is due, each with its hook's URL."""
        deliveries, hooks = _DELIVERIES, _HOOKS
        with self._store.connect() as conn:
            rows = conn.execute(
                sa.select(deliveries, hooks.c.url.label("url"))
                .join(hooks, hooks.c.id == deliveries.c.webhook_id)
                .where(deliveries.c.state == "pending", deliveries.c.next_attempt <= utcnow())
                .order_by(deliveries.c.next_attempt)
                .limit(limit)
            )
            return [(_delivery(r), r.url) for r in rows]

    def record_attempt(
        self,
        delivery_id: int,
        *,
        ok: bool,
        status: int | None,
        error: str | None,
        retry_in: timedelta | None,
    ) -> None:
        """Record one attempt: delivered, retried after `retry_in`, or failed for good (None)."""
        table = _DELIVERIES
        now = utcnow()
        values: dict[str, Any] = {
            "attempts": table.c.attempts + 1,
            "last_status": status,
            "last_error": None if ok else (error or f"HTTP {status}")[:2000],
        }
        if ok:
            values.update(state="delivered", delivered=now)
        elif retry_in is None:
            values.update(state="failed")
        else:
            values.update(next_attempt=now + retry_in)
        with self._store.connect(write=True) as conn:
            conn.execute(sa.update(table).where(table.c.id == delivery_id).values(**values))


def _token(row: Any) -> TokenInfo:
    return TokenInfo(row.id, row.name, row.prefix, row.created, row.last_used, row.revoked)


def _webhook_select() -> sa.Select[Any]:
    hooks, deliveries = _HOOKS, _DELIVERIES

    def count(state: str) -> sa.ScalarSelect[Any]:
        return (
            sa.select(sa.func.count())
            .where(deliveries.c.webhook_id == hooks.c.id, deliveries.c.state == state)
            .scalar_subquery()
        )

    return sa.select(hooks, count("pending").label("n_pending"), count("failed").label("n_failed"))


def _webhook(row: Any) -> WebhookInfo:
    return WebhookInfo(
        row.id,
        row.url,
        row.min_severity,
        row.created_by,
        row.after_flag_id,
        row.active,
        row.created,
        row.n_pending,
        row.n_failed,
    )


def _delivery(row: Any) -> DeliveryInfo:
    return DeliveryInfo(
        row.id,
        row.webhook_id,
        row.flag_id,
        row.payload,
        row.state,
        row.attempts,
        row.next_attempt,
        row.last_status,
        row.last_error,
        row.created,
        row.delivered,
    )
