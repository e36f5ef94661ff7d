"""One page of a list, as every read surface returns it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_LIMIT = 10_000
"""The most items one page may hold."""


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: `items[i]` is result number `offset + i` of `total`."""

    items: tuple[T, ...]
    total: int
    limit: int
    offset: int
