"""Webhook safety: Standard Webhooks signatures checked by a receiver written from the docs,
targets refused after DNS resolution (and again at delivery), no redirects followed, what
non-admins see, and one slow receiver not delaying the others."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.request
from collections.abc import Mapping

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from beliefscope.store.engine import Store
from server.app import create_app
from tests.server.conftest import Built, make_settings
from tests.server.test_webhooks_jobs_exports import Receiver, _flag

TOLERANCE_S = 5 * 60


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float) -> dict:
    """A receiver's check, as docs/deploying.md shows it: the signature over id.timestamp.body
    with the hook's secret, and a timestamp within five minutes (so a captured request cannot be
    replayed later)."""
    msg_id, stamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(now - int(stamp)) > TOLERANCE_S:
        raise ValueError("timestamp outside the tolerance: a replay?")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    expected = base64.b64encode(mac).decode()
    for candidate in headers["webhook-signature"].split():
        version, _, sig = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return json.loads(body)
    raise ValueError("no valid signature")


@pytest.fixture
def app(built: Built, store_copy: Store) -> FastAPI:
    settings = make_settings(built, store_copy, webhook_allow=["127.0.0.1"])
    return create_app(settings, store=store_copy, webhook_interval_s=3600)


@pytest.fixture
def reader(store_copy: Store) -> dict[str, str]:
    return {
        "Authorization": "Bearer "
        + store_copy.access.create_token("ron", scope="read", who="tests")[1]
    }


class VerifyingReceiver(Receiver):
    """A receiver that accepts (204) only requests whose signature and timestamp verify."""

    def __init__(self) -> None:
        super().__init__(status=204)
        self.secret = ""
        self.accepted: list[dict] = []
        self.rejected: list[str] = []

    def judge(self) -> None:
        for headers, raw in self.requests[len(self.accepted) + len(self.rejected) :]:
            try:
                self.accepted.append(verify(self.secret, headers, raw, now=time.time()))
            except (ValueError, KeyError) as err:
                self.rejected.append(str(err))


def _post(url: str, body: bytes, headers: Mapping[str, str]) -> None:
    request = urllib.request.Request(url, data=body, method="POST", headers=dict(headers))
    with urllib.request.urlopen(request, timeout=5):
        pass


def test_deliveries_are_signed_and_a_receiver_rejects_tampering_and_replays(
    app: FastAPI, client: TestClient, auth: dict
) -> None:
    receiver = VerifyingReceiver()
    try:
        created = client.post(
            "/api/v1/webhooks", json={"url": receiver.url, "min_severity": "low"}, headers=auth
        )
        assert created.status_code == 201
        receiver.secret = created.json()["secret"]  # shown this once
        assert receiver.secret.startswith("whsec_")
        hook_id = created.json()["id"]
        assert "secret" not in client.get(f"/api/v1/webhooks/{hook_id}", headers=auth).json()
        assert receiver.secret not in client.get("/api/v1/webhooks", headers=auth).text
        flag_id = _flag(client, auth, "high")
        app.state.ctx.webhooks.run_once()
        receiver.judge()
        assert [b["flag"]["id"] for b in receiver.accepted] == [flag_id] and not receiver.rejected
        headers, raw = receiver.requests[0]
        assert headers["webhook-id"] == f"msg_{headers['webhook-id'][4:]}"
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
        assert headers["webhook-signature"].startswith("v1,")
        forwarded = {
            k: headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")
        }
        # a tampered body, sent to the receiver with the original signature
        tampered = raw.replace(b'"severity": "high"', b'"severity": "low"')
        assert tampered != raw
        _post(receiver.url, tampered, {**forwarded, "Content-Type": "application/json"})
        # the untouched request replayed ten minutes later
        with pytest.raises(ValueError, match="replay"):
            verify(receiver.secret, headers, raw, now=int(headers["webhook-timestamp"]) + 600)
        receiver.judge()
        assert receiver.rejected == ["no valid signature"]
        assert len(receiver.accepted) == 1
        # a replaced secret: the old one no longer verifies new deliveries
        new = client.post(f"/api/v1/webhooks/{hook_id}/secret", headers=auth).json()["secret"]
        _flag(client, auth, "high")
        app.state.ctx.webhooks.run_once()
        receiver.judge()
        assert receiver.rejected[-1] == "no valid signature"
        receiver.secret = new
        assert verify(new, *receiver.requests[-1], now=time.time())["event"] == "flag.created"
    finally:
        receiver.close()


REFUSED = [
    "http://127.0.0.1:5432/",
    "http://localhost:8050/",
    "http://169.254.169.254/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://10.0.0.1/",
    "http://192.168.1.1/",
    "http://172.16.0.1/",
    "http://100.64.0.1/",
    "http://[::1]:6379/",
    "http://[::ffff:127.0.0.1]/",
    "http://[fe80::1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://127.1/",
    "http://0.0.0.0:8050/",
    "http://224.0.0.1/",
    "http://user:password@93.184.215.14/",
    "http://nothing.invalid/",
]


def test_private_targets_are_refused_after_resolution(
    built: Built, store_copy: Store, auth: dict
) -> None:
    """The probe's list, and more: none of these may become a hook (no allow-list here)."""
    app = create_app(make_settings(built, store_copy), store=store_copy, webhook_interval_s=3600)
    with TestClient(app) as client:
        for url in REFUSED:
            answer = client.post("/api/v1/webhooks", json={"url": url}, headers=auth)
            assert answer.status_code == 400, (url, answer.text)
        assert client.get("/api/v1/webhooks", headers=auth).json()["count"] == 0
        public = client.post(
            "/api/v1/webhooks", json={"url": "http://93.184.215.14/x"}, headers=auth
        )
        assert public.status_code == 201  # a public address (no lookup needed)
        only_port = make_settings(built, store_copy, webhook_allow=["127.0.0.1:9999"])
    with TestClient(create_app(only_port, store=store_copy, webhook_interval_s=3600)) as client:
        ok = client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9999/"}, headers=auth)
        other = client.post(
            "/api/v1/webhooks", json={"url": "http://127.0.0.1:9998/"}, headers=auth
        )
        assert (ok.status_code, other.status_code) == (201, 400)


def test_the_target_is_checked_again_at_delivery(
    built: Built, store_copy: Store, auth: dict, reader: dict
) -> None:
    """A hook registered while its host was allowed (or resolved elsewhere, DNS rebinding) is
    not sent once it resolves to a refused address; only admins see why."""
    receiver = Receiver()
    allowed = make_settings(built, store_copy, webhook_allow=["127.0.0.1"])
    try:
        with TestClient(create_app(allowed, store=store_copy, webhook_interval_s=3600)) as c:
            hook = c.post(
                "/api/v1/webhooks", json={"url": receiver.url + "?key=s3cret"}, headers=auth
            )
            hook_id = hook.json()["id"]
            _flag(c, auth, "high")
        strict = create_app(
            make_settings(built, store_copy), store=store_copy, webhook_interval_s=3600
        )
        with TestClient(strict) as c:
            assert strict.state.ctx.webhooks.run_once() == (1, 1)
            assert receiver.bodies == []
            admin = c.get(f"/api/v1/webhooks/{hook_id}/deliveries", headers=auth).json()["data"][0]
            assert "refused target" in admin["last_error"] and "127.0.0.1" in admin["last_error"]
            for headers in (reader, {}):
                seen = c.get(f"/api/v1/webhooks/{hook_id}/deliveries", headers=headers).json()
                shown = seen["data"][0]
                assert shown["last_status"] is None and "127.0.0.1" not in shown["last_error"]
                listed = c.get("/api/v1/webhooks", headers=headers).json()["data"][0]
                assert listed["url"] == f"http://127.0.0.1:{receiver.server.server_address[1]}/…"
                assert "s3cret" not in c.get(f"/api/v1/webhooks/{hook_id}", headers=headers).text
            full = c.get(f"/api/v1/webhooks/{hook_id}", headers=auth).json()["url"]
            assert full.endswith("/hook?key=s3cret")
    finally:
        receiver.close()


def test_redirects_are_not_followed(app: FastAPI, client: TestClient, auth: dict) -> None:
    """The probe's finding: a 302 to another local port was followed and recorded delivered."""
    elsewhere = Receiver()
    redirecting = Receiver(status=302, location=elsewhere.url)
    try:
        hook = client.post(
            "/api/v1/webhooks", json={"url": redirecting.url, "min_severity": "low"}, headers=auth
        ).json()
        _flag(client, auth, "low")
        app.state.ctx.webhooks.run_once()
        record = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=auth).json()
        record = record["data"][0]
        assert record["state"] == "pending" and record["last_status"] == 302
        assert "not followed" in record["last_error"]
        assert len(redirecting.bodies) == 1 and elsewhere.bodies == []
    finally:
        redirecting.close()
        elsewhere.close()


def test_a_slow_receiver_does_not_delay_the_others(
    built: Built, store_copy: Store, auth: dict
) -> None:
    """Deliveries went out one at a time with a 5 s timeout: one slow receiver held up all."""
    slow, fast = Receiver(delay_s=4.0), Receiver()
    settings = make_settings(built, store_copy, webhook_allow=["127.0.0.1"])
    try:
        app = create_app(settings, store=store_copy, webhook_interval_s=0.2)
        with TestClient(app) as client:  # the background worker runs
            hooks = [
                client.post(
                    "/api/v1/webhooks", json={"url": r.url, "min_severity": "low"}, headers=auth
                ).json()["id"]
                for r in (slow, fast)
            ]
            started = time.monotonic()
            _flag(client, auth, "low")
            assert slow.got.wait(10) and fast.got.wait(10)
            fast_after = time.monotonic() - started
            slow_state = store_copy.access.list_deliveries(webhook_id=hooks[0]).items[0].state
            assert fast_after < 3.0, fast_after  # not queued behind the slow one's 4 s
            assert slow_state == "pending"  # the slow one was still answering meanwhile
            deadline = time.monotonic() + 15
            while (
                store_copy.access.list_deliveries(webhook_id=hooks[0]).items[0].state == "pending"
            ):
                assert time.monotonic() < deadline, "the slow receiver's delivery never finished"
                time.sleep(0.1)
            states = [store_copy.access.list_deliveries(webhook_id=h).items[0].state for h in hooks]
            assert states == ["delivered", "delivered"]
    finally:
        slow.close()
        fast.close()
