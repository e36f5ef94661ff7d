"""Webhooks: POST a JSON summary of each new flag at or above a hook's severity.

Flags are created by ingest, rule runs and people, in this process or another one, so the
worker does not wait to be told: every `interval_s` it asks the review store for flags newer
than each hook's cursor, queues one delivery per matching flag (and moves the cursor in the
same transaction), then sends the deliveries that are due. A failed POST is retried with
exponential backoff up to `max_attempts`, then marked failed; every attempt's status and error
is visible through the API. Nothing here runs on an ingest's path, so a slow or dead receiver
never holds ingest up.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

from beliefscope.store.engine import Store
from beliefscope.values.access import DeliveryInfo, WebhookInfo
from beliefscope.values.review import SEVERITIES, FlagInfo

log = logging.getLogger("beliefscope.server")

SEND_TIMEOUT_S = 5.0
_BATCH = 500


def at_least(severity: str, minimum: str) -> bool:
    return SEVERITIES.index(severity) >= SEVERITIES.index(minimum)


def newest_flag_id(store: Store) -> int:
    """The id of the newest flag (0 when there are none): a new hook's starting cursor."""
    page = store.reviews.list_flags(after_id=0, limit=1)
    if page.total == 0:
        return 0
    last = store.reviews.list_flags(after_id=0, limit=1, offset=page.total - 1)
    return last.items[0].id if last.items else 0


def payload(flag: FlagInfo, base_url: str) -> dict[str, Any]:
    return {
        "event": "flag.created",
        "flag": {
            "id": flag.id,
            "checkpoint_id": flag.checkpoint_id,
            "episode_id": flag.episode_id,
            "trace_id": flag.trace_id,
            "variant": flag.variant,
            "t0": flag.t0,
            "t1": flag.t1,
            "severity": flag.severity,
            "source": flag.source,
            "rule": flag.rule_name,
            "peak": flag.peak,
            "peak_t": flag.peak_t,
            "state": flag.state,
        },
        "link": f"{base_url}/api/v1/flags/{flag.id}",
        "dashboard": f"{base_url}/episodes/{flag.episode_id}?t={flag.t0}",
    }


class WebhookWorker:
    def __init__(
        self,
        store: Store,
        *,
        base_url: str,
        interval_s: float = 2.0,
        backoff_s: float = 2.0,
        max_attempts: int = 6,
    ) -> None:
        self._store = store
        self.base_url = base_url.rstrip("/")
        self.interval_s = interval_s
        self.backoff_s = backoff_s
        self.max_attempts = max_attempts
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=SEND_TIMEOUT_S + 1)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once()
            except Exception:  # a store hiccup must not kill the worker
                log.exception("webhook worker pass failed")

    def run_once(self) -> tuple[int, int]:
        """Queue deliveries for new flags and send the due ones; returns (queued, sent)."""
        queued = sum(self._queue(hook) for hook in self._hooks())
        sent = 0
        for delivery, url in self._store.access.due_deliveries():
            self._send(delivery, url)
            sent += 1
        return queued, sent

    def _hooks(self) -> list[WebhookInfo]:
        page = self._store.access.list_webhooks(active=True, limit=1000)
        return list(page.items)

    def _queue(self, hook: WebhookInfo) -> int:
        queued = 0
        cursor = hook.after_flag_id
        while True:
            page = self._store.reviews.list_flags(after_id=cursor, limit=_BATCH)
            if not page.items:
                return queued
            bodies = {
                f.id: payload(f, self.base_url)
                for f in page.items
                if at_least(f.severity, hook.min_severity)
            }
            cursor = page.items[-1].id
            queued += self._store.access.advance_webhook(hook.id, cursor, bodies)

    def _send(self, delivery: DeliveryInfo, url: str) -> None:
        body = json.dumps(delivery.payload).encode()
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "beliefscope-webhook"},
        )
        status: int | None = None
        error: str | None = None
        try:
            with urllib.request.urlopen(request, timeout=SEND_TIMEOUT_S) as answer:  # noqa: S310
                status = answer.status
        except urllib.error.HTTPError as err:
            status, error = err.code, f"HTTP {err.code} {err.reason}"
        except (urllib.error.URLError, OSError, ValueError) as err:
            error = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
        ok = status is not None and 200 <= status < 300
        attempts = delivery.attempts + 1
        retry = None
        if not ok and attempts < self.max_attempts:
            retry = timedelta(seconds=self.backoff_s * 2 ** (attempts - 1))
        self._store.access.record_attempt(
            delivery.id, ok=ok, status=status, error=error, retry_in=retry
        )
