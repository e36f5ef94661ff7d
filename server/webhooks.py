"""Webhooks: POST a signed JSON summary of each new flag at or above a hook's severity.

Flags are created by ingest, rule runs and people, in this process or another one, so the
worker does not wait to be told: every `interval_s` it asks the review store for flags newer
than each hook's cursor, queues one delivery per matching flag (and moves the cursor in the
same transaction), then claims the deliveries that are due and sends them, each hook's in
order on a pool of sender threads: a slow or dead receiver holds up only its own hook, never
the others (and nothing here runs on an ingest's path). A failed POST is retried with
exponential backoff up to `max_attempts`, then marked failed; every attempt's status and error
is recorded (admins read the details, others only that it failed). Targets are checked by
`server.targets` before each attempt, and signed as `server.signing` describes.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from beliefscope.store.engine import Store
from beliefscope.values.access import DeliveryTarget, WebhookInfo
from beliefscope.values.review import SEVERITIES, FlagInfo
from server.signing import signed_headers
from server.targets import RefusedTarget, TargetPolicy, post

log = logging.getLogger("beliefscope.server")

SEND_TIMEOUT_S = 5.0
SENDERS = 8
"""Sender threads: this many receivers can be slow at once before the others wait."""
CLAIM_LEASE = timedelta(minutes=10)
"""How long a claimed delivery is left alone by other passes and processes (a sender that
died mid-send is retried after it)."""
_BATCH = 500


def at_least(severity: str, minimum: str) -> bool:
    return SEVERITIES.index(severity) >= SEVERITIES.index(minimum)


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
        targets: TargetPolicy,
        interval_s: float = 2.0,
        backoff_s: float = 2.0,
        max_attempts: int = 6,
    ) -> None:
        self._store = store
        self.base_url = base_url.rstrip("/")
        self.targets = targets
        self.interval_s = interval_s
        self.backoff_s = backoff_s
        self.max_attempts = max_attempts
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._senders = ThreadPoolExecutor(SENDERS, thread_name_prefix="webhook-send")
        self._busy: set[int] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=SEND_TIMEOUT_S + 1)
            self._thread = None
        self._senders.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once(wait=False)
            except Exception:  # a store hiccup must not kill the worker
                log.exception("webhook worker pass failed")

    def run_once(self, *, wait: bool = True) -> tuple[int, int]:
        """Queue deliveries for new flags and start sending the due ones (with `wait`, until
        they are sent); returns (queued, claimed for sending)."""
        queued = sum(self._queue(hook) for hook in self._hooks())
        with self._lock:
            busy = frozenset(self._busy)
        claimed = self._store.access.claim_due(lease=CLAIM_LEASE, skip_hooks=busy)
        by_hook: dict[int, list[DeliveryTarget]] = defaultdict(list)
        for target in claimed:
            by_hook[target.delivery.webhook_id].append(target)
        sending: list[Future[None]] = []
        for hook_id, targets in by_hook.items():
            with self._lock:
                self._busy.add(hook_id)
            sending.append(self._senders.submit(self._send_all, hook_id, targets))
        if wait:
            for future in sending:
                future.result()
        return queued, len(claimed)

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

    def _send_all(self, hook_id: int, targets: list[DeliveryTarget]) -> None:
        try:
            for target in targets:
                try:
                    self._send(target)
                except Exception:  # one bad delivery must not strand the hook's others
                    log.exception("webhook delivery %d failed", target.delivery.id)
        finally:
            with self._lock:
                self._busy.discard(hook_id)

    def _send(self, claimed: DeliveryTarget) -> None:
        delivery = claimed.delivery
        body = json.dumps(delivery.payload).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "beliefscope-webhook",
            **signed_headers(claimed.secret, f"msg_{delivery.id}", int(time.time()), body),
        }
        status: int | None = None
        error: str | None = None
        try:
            status = post(self.targets.check(claimed.url), body, headers, timeout=SEND_TIMEOUT_S)
            if 300 <= status < 400:
                error = f"HTTP {status}: redirects are not followed"
            elif not 200 <= status < 300:
                error = f"HTTP {status}"
        except RefusedTarget as err:
            error = f"refused target: {err}"
        except (OSError, ValueError, http.client.HTTPException) as err:
            error = f"{type(err).__name__}: {err}"
        ok = status is not None and 200 <= status < 300
        attempts = delivery.attempts + 1
        retry = None
        if not ok and attempts < self.max_attempts:
            retry = timedelta(seconds=self.backoff_s * 2 ** (attempts - 1))
        self._store.access.record_attempt(
            delivery.id, ok=ok, status=status, error=error, retry_in=retry
        )
