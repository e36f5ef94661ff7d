"""A thread-safe LRU bounded by bytes that makes each missing value once.

The frame service keeps whole-episode decodes, loaded models and rendered frames; what bounds
their memory is their size, not their number (one decode of a 10k-step episode weighs as much
as a thousand short ones). Concurrent requests for a missing key wait for the one request that
makes it, so a model is loaded and an episode decoded once, not once per request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import cachetools

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ByteLRU(Generic[K, V]):
    """At most `max_bytes` of values, `size_of` telling each one's bytes; a value larger than
    the whole budget is handed out but not kept."""

    def __init__(self, max_bytes: int, size_of: Callable[[V], int]) -> None:
        self._items: cachetools.LRUCache[K, V] = cachetools.LRUCache(max_bytes, getsizeof=size_of)
        self._size_of = size_of
        self._lock = threading.Lock()
        self._making: dict[K, threading.Lock] = {}

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        with self._lock:
            if key in self._items:
                return self._items[key]
            making = self._making.setdefault(key, threading.Lock())
        with making:  # the first caller makes it; the others wait here, then find it
            with self._lock:
                if key in self._items:
                    return self._items[key]
            try:
                value = make()
                with self._lock:
                    if self._size_of(value) <= self._items.maxsize:
                        self._items[key] = value
            finally:
                with self._lock:
                    self._making.pop(key, None)
        return value

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def bytes(self) -> int:
        with self._lock:
            return int(self._items.currsize)
