"""SQL helpers the store's surfaces share: one dialect-aware upsert, id chunks, NaN as NULL,
a page of rows with its total, rows as frozen values."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

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


def page_rows(
    conn: sa.Connection,
    query: sa.Select[Any],
    table: sa.Table,
    where: Sequence[Any],
    *,
    order: Sequence[Any],
    limit: int,
    offset: int,
) -> tuple[int, list[Any]]:
    """The total of `table`'s rows matching `where`, and one page of `query` over them."""
    total = conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()
    rows = conn.execute(query.where(*where).order_by(*order).limit(limit).offset(offset)).all()
    return int(total), list(rows)


V = TypeVar("V")


def value_of(cls: type[V], row: Any) -> V:
    """The frozen dataclass `cls` from a row whose columns (or labels) carry its field names."""
    assert dataclasses.is_dataclass(cls), cls
    return cls(*(getattr(row, f.name) for f in dataclasses.fields(cls)))
