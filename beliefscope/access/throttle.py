"""Throttle failed sign-ins and bad tokens per client, so secrets cannot be guessed at speed.

A client (its address) that failed `limit` times within the last `window_s` seconds is refused
every further attempt (429, `Retry-After`) until its oldest counted failure ages out. Memory is
bounded: at most `max_clients` clients are tracked, the longest-quiet ones forgotten first.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from beliefscope.errors import TooManyRequestsError


class Throttle:
    def __init__(
        self,
        limit: int,
        *,
        window_s: float = 60.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        """Refuse `client` while it is over the limit."""
        with self._lock:
            recent = self._recent(client)
            if recent is None or len(recent) < self.limit:
                return
            wait = recent[0] + self.window_s - self._clock()
        raise TooManyRequestsError(
            "too many failed sign-ins or bad tokens from this client; try again later",
            retry_after=max(1, math.ceil(wait)),
        )

    def failed(self, client: str) -> None:
        with self._lock:
            recent = self._recent(client)
            if recent is None:
                recent = self._failures[client] = deque()
            recent.append(self._clock())
            self._failures.move_to_end(client)
            while len(self._failures) > self._max_clients:
                self._failures.popitem(last=False)

    def _recent(self, client: str) -> deque[float] | None:
        """The client's failures within the window (older ones dropped), None if none."""
        recent = self._failures.get(client)
        if recent is None:
            return None
        horizon = self._clock() - self.window_s
        while recent and recent[0] <= horizon:
            recent.popleft()
        if not recent:
            del self._failures[client]
            return None
        return recent
