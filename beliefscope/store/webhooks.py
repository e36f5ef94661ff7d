"""Webhooks and their deliveries (`store.access`).

Each hook has its own signing secret (Standard Webhooks: `whsec_` + base64 of 32 random
bytes), returned once when the hook is created or its secret replaced. Deleting a hook is soft:
it stops, disappears from lists and keeps its deliveries, so an admin can restore it. A
delivery is claimed before it is sent (its next attempt moved a lease ahead in one write), so
two workers on one store never send it twice.
"""

from __future__ import annotations

import base64
import secrets
from datetime import timedelta
from typing import Any, cast

import sqlalchemy as sa

from beliefscope.errors import NotFoundError
from beliefscope.store.access_tables import Webhook, WebhookDelivery
from beliefscope.store.activity import record
from beliefscope.store.engine import Surface
from beliefscope.store.review_tables import Flag
from beliefscope.store.sql import page_rows, value_of
from beliefscope.store.tables import utcnow
from beliefscope.values.access import DeliveryInfo, DeliveryTarget, WebhookInfo
from beliefscope.values.page import Page

SECRET_PREFIX = "whsec_"
_HOOKS = cast(sa.Table, Webhook.__table__)
_DELIVERIES = cast(sa.Table, WebhookDelivery.__table__)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


class WebhookTable(Surface):
    def create_webhook(
        self, *, url: str, min_severity: str, created_by: str
    ) -> tuple[WebhookInfo, str]:
        """A new hook for the flags made from now on; returns it with its signing secret (the
        only time it is shown)."""
        secret = new_secret()
        with self._store.connect(write=True) as conn:
            new_id = conn.execute(
                sa.insert(_HOOKS)
                .values(
                    url=url,
                    min_severity=min_severity,
                    created_by=created_by,
                    after_flag_id=_newest_flag_id(conn),
                    active=True,
                    created=utcnow(),
                    secret=secret,
                )
                .returning(_HOOKS.c.id)
            ).scalar_one()
            details = {"url": url, "min_severity": min_severity}
            target = f"webhook:{new_id}"
            record(conn, who=created_by, action="webhook.create", target=target, details=details)
        return self.get_webhook(new_id), secret

    def get_webhook(self, webhook_id: int, *, include_deleted: bool = False) -> WebhookInfo:
        query = _webhook_select().where(_HOOKS.c.id == webhook_id)
        if not include_deleted:
            query = query.where(_HOOKS.c.deleted.is_(None))
        with self._store.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(f"no webhook {webhook_id}")
        return value_of(WebhookInfo, row)

    def list_webhooks(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        active: bool | None = None,
        deleted: bool = False,
    ) -> Page[WebhookInfo]:
        """Hooks by id; with `deleted`, only the deleted ones (for an admin to restore)."""
        table = _HOOKS
        where = [table.c.deleted.is_not(None) if deleted else table.c.deleted.is_(None)]
        if active is not None:
            where.append(table.c.active.is_(active))
        with self._store.connect() as conn:
            total, rows = page_rows(
                conn,
                _webhook_select(),
                table,
                where,
                order=[table.c.id],
                limit=limit,
                offset=offset,
            )
        return Page(tuple(value_of(WebhookInfo, r) for r in rows), total, limit, offset)

    def delete_webhook(self, webhook_id: int, *, who: str) -> None:
        """Stop and hide the hook (kept with its deliveries, restorable)."""
        self._set_deleted(webhook_id, who, deleted=True)

    def restore_webhook(self, webhook_id: int, *, who: str) -> WebhookInfo:
        """Undo a deletion; flags made meanwhile are not sent (its cursor moves past them)."""
        self._set_deleted(webhook_id, who, deleted=False)
        return self.get_webhook(webhook_id)

    def _set_deleted(self, webhook_id: int, who: str, *, deleted: bool) -> None:
        table = _HOOKS
        with self._store.connect(write=True) as conn:
            row = conn.execute(
                sa.select(table.c.id).where(
                    table.c.id == webhook_id,
                    table.c.deleted.is_(None) if deleted else table.c.deleted.is_not(None),
                )
            ).first()
            if row is None:
                state = "" if deleted else "deleted "
                raise NotFoundError(f"no {state}webhook {webhook_id}")
            values: dict[str, Any] = {"deleted": utcnow() if deleted else None}
            values["deleted_by"] = who if deleted else None
            if not deleted:
                values["after_flag_id"] = _newest_flag_id(conn)
            conn.execute(sa.update(table).where(table.c.id == webhook_id).values(**values))
            action = "webhook.delete" if deleted else "webhook.restore"
            record(conn, who=who, action=action, target=f"webhook:{webhook_id}")

    def replace_secret(self, webhook_id: int, *, who: str) -> str:
        """A new signing secret for the hook (the old one stops signing at once)."""
        secret = new_secret()
        with self._store.connect(write=True) as conn:
            changed = conn.execute(
                sa.update(_HOOKS)
                .where(_HOOKS.c.id == webhook_id, _HOOKS.c.deleted.is_(None))
                .values(secret=secret)
            ).rowcount
            if not changed:
                raise NotFoundError(f"no webhook {webhook_id}")
            record(conn, who=who, action="webhook.secret", target=f"webhook:{webhook_id}")
        return secret

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
            total, rows = page_rows(
                conn,
                sa.select(table),
                table,
                where,
                order=[table.c.id.desc()],
                limit=limit,
                offset=offset,
            )
        return Page(tuple(value_of(DeliveryInfo, r) for r in rows), total, limit, offset)

    def claim_due(
        self, *, lease: timedelta, limit: int = 50, skip_hooks: frozenset[int] = frozenset()
    ) -> list[DeliveryTarget]:
        """Pending deliveries of live hooks (except `skip_hooks`) whose next attempt is due,
        claimed: their next attempt moves `lease` ahead, so no other pass or process sends them
        meanwhile (an attempt's record sets the real next attempt)."""
        deliveries, hooks = _DELIVERIES, _HOOKS
        now = utcnow()
        query = (
            sa.select(deliveries, hooks.c.url.label("url"), hooks.c.secret.label("secret"))
            .join(hooks, hooks.c.id == deliveries.c.webhook_id)
            .where(
                deliveries.c.state == "pending",
                deliveries.c.next_attempt <= now,
                hooks.c.active.is_(True),
                hooks.c.deleted.is_(None),
            )
            .order_by(deliveries.c.next_attempt, deliveries.c.id)
            .limit(limit)
        )
        if skip_hooks:
            query = query.where(deliveries.c.webhook_id.not_in(sorted(skip_hooks)))
        claimed = []
        with self._store.connect(write=True) as conn:
            for row in conn.execute(query).all():
                won = conn.execute(
                    sa.update(deliveries)
                    .where(deliveries.c.id == row.id, deliveries.c.next_attempt <= now)
                    .values(next_attempt=now + lease)
                ).rowcount
                if won:
                    claimed.append(DeliveryTarget(value_of(DeliveryInfo, row), row.url, row.secret))
        return claimed

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


def _newest_flag_id(conn: sa.Connection) -> int:
    """The newest flag's id (0 without flags): a hook's cursor starts there, so it is not
    flooded with the history."""
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(Flag.id), 0))).scalar_one())


def _webhook_select() -> sa.Select[Any]:
    hooks, deliveries = _HOOKS, _DELIVERIES

    def count(state: str) -> sa.ScalarSelect[Any]:
        return (
            sa.select(sa.func.count())
            .where(deliveries.c.webhook_id == hooks.c.id, deliveries.c.state == state)
            .scalar_subquery()
        )

    columns = [c for c in hooks.c if c.name != "secret"]  # the secret is read to sign only
    return sa.select(
        *columns, count("pending").label("n_pending"), count("failed").label("n_failed")
    )
