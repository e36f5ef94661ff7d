"""The activity log (`store.activity`): who changed what, and when, for every state change.

Each surface that changes state writes its activity row with `record`, inside the transaction
of the change itself, so a change and its record commit together or not at all. The table only
ever grows: this module offers no update or delete, and the database refuses both (triggers,
migration 0007).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa

from beliefscope.errors import BadInputError
from beliefscope.store.access_tables import Activity
from beliefscope.store.engine import Surface
from beliefscope.store.sql import page_rows, value_of
from beliefscope.store.tables import utcnow
from beliefscope.values.access import ActivityEntry
from beliefscope.values.page import MAX_LIMIT, Page


def record(
    conn: sa.Connection,
    *,
    who: str,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one entry in the caller's transaction."""
    conn.execute(
        sa.insert(Activity).values(
            at=utcnow(), who=who[:100], action=action, target=target[:200], details=details or {}
        )
    )


class ActivityLog(Surface):
    def record(
        self, *, who: str, action: str, target: str, details: dict[str, Any] | None = None
    ) -> None:
        """Append one entry for a change made outside the store (e.g. an ingest job queued)."""
        with self._store.connect(write=True) as conn:
            record(conn, who=who, action=action, target=target, details=details)

    def list_activity(
        self,
        *,
        who: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[ActivityEntry]:
        """Entries matching every given filter, newest first; `action` may name a family
        (`flag` matches `flag.review`, `flag.delete`, ...)."""
        if not 1 <= limit <= MAX_LIMIT:
            raise BadInputError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        table = cast(sa.Table, Activity.__table__)
        where: list[Any] = []
        if who is not None:
            where.append(table.c.who == who)
        if action is not None:
            where.append(
                table.c.action == action
                if "." in action
                else table.c.action.startswith(action + ".", autoescape=True)
            )
        if target is not None:
            where.append(table.c.target == target)
        if since is not None:
            where.append(table.c.at >= since)
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
        entries = tuple(value_of(ActivityEntry, r) for r in rows)
        return Page(entries, total, limit, offset)
