"""SQL helpers the store's surfaces share: one dialect-aware upsert, id chunks, NaN as NULL."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

CHUNK = 500
"""Ids per `IN (...)` list: well under SQLite's bound-parameter limit."""


def dialect_insert(conn: sa.Connection, entity: Any) -> Any:
    """The dialect's INSERT, which has `on_conflict_do_nothing` on both backends."""
    return (sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert)(entity)


def chunks(ids: Sequence[int]) -> Iterable[list[int]]:
    for i in range(0, len(ids), CHUNK):
        yield [int(x) for x in ids[i : i + CHUNK]]


def nullable(value: float) -> float | None:
    """NaN as NULL (SQLite would do it anyway; PostgreSQL must agree)."""
    return None if math.isnan(value) else float(value)
