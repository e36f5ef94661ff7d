"""The API on PostgreSQL, and `beliefscope serve` as a real process (API + dashboard)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from beliefscope.access import COOKIE
from beliefscope.config import get_settings
from beliefscope.store.engine import Store, open_store
from beliefscope.values.access import Scope
from server.app import create_app
from tests.builders import ingest_run
from tests.server.conftest import Built, make_settings
from tests.server.test_webhook_safety import verify
from tests.server.test_webhooks_jobs_exports import Receiver


@pytest.mark.postgres
def test_api_on_postgresql(built: Built, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BELIEFSCOPE_HOME", str(built.home))
    get_settings.cache_clear()
    ingest_run(pg_url, built.run_dir, built.world)
    store = open_store(pg_url)
    try:
        secret = store.access.create_token("pg-reviewer", scope="review", who="tests")[1]
        auth = {"Authorization": f"Bearer {secret}"}
        with TestClient(create_app(make_settings(built, store), store=store)) as c:
            assert c.get("/healthz").json()["store"] == "postgresql"
            trace = c.get("/api/v1/traces").json()["data"][0]
            series = c.get(f"/api/v1/traces/{trace['id']}/series", params={"metrics": "kl"}).json()
            assert len(series["series"]["kl"]["values"]) == 40
            assert series["series"]["kl"]["values"][0] != "NaN"
            body = {"trace_id": trace["id"], "t0": 3, "t1": 6, "severity": "high"}
            flag = c.post("/api/v1/flags", json=body, headers=auth)
            assert flag.status_code == 201 and flag.json()["updated_by"] == "pg-reviewer"
            review = c.patch(
                f"/api/v1/flags/{flag.json()['id']}", json={"state": "confirmed"}, headers=auth
            )
            assert review.json()["state"] == "confirmed"
            frame = c.get(
                f"/api/v1/episodes/{trace['episode_id']}/frames/4", params={"panels": "recon,error"}
            )
            assert frame.status_code == 200 and frame.content[:3] == b"\xff\xd8\xff"
            assert c.get("/api/v1/runs/2147483647").status_code == 404
    finally:
        store.close()
        get_settings.cache_clear()


@pytest.mark.postgres
def test_access_and_signed_webhooks_on_postgresql(
    built: Built, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scopes, soft deletion, sessions, the activity log and a signed delivery on PostgreSQL."""
    monkeypatch.setenv("BELIEFSCOPE_HOME", str(built.home))
    get_settings.cache_clear()
    ingest_run(pg_url, built.run_dir, built.world)
    store = open_store(pg_url)
    receiver = Receiver()
    try:
        admin = _bearer(store, "pg-admin", "admin")
        reader = _bearer(store, "pg-reader", "read")
        settings = make_settings(built, store, webhook_allow=["127.0.0.1"])
        app = create_app(settings, store=store, webhook_interval_s=3600)
        with TestClient(app) as c:
            trace = c.get("/api/v1/traces").json()["data"][0]["id"]
            body = {"trace_id": trace, "t0": 3, "t1": 6, "severity": "high"}
            assert c.post("/api/v1/flags", json=body, headers=reader).status_code == 403
            hook = c.post("/api/v1/webhooks", json={"url": receiver.url}, headers=admin).json()
            flag_id = c.post("/api/v1/flags", json=body, headers=admin).json()["id"]
            assert app.state.ctx.webhooks.run_once() == (1, 1)
            headers, raw = receiver.requests[0]
            assert verify(hook["secret"], headers, raw, now=time.time())["flag"]["id"] == flag_id
            assert c.delete(f"/api/v1/flags/{flag_id}", headers=admin).status_code == 204
            assert c.get(f"/api/v1/flags/{flag_id}", headers=reader).status_code == 404
            assert c.post(f"/api/v1/flags/{flag_id}/restore", headers=admin).status_code == 200
            secret = store.access.create_token("pg-browser", scope="review", who="tests")[1]
            own = {"Origin": "http://testserver"}
            assert (
                c.post("/api/v1/auth/login", json={"token": secret}, headers=own).status_code == 200
            )
            c.cookies.set(COOKIE, c.cookies[COOKIE])  # httpx keeps Secure cookies off http
            assert c.get("/api/v1/auth/me").json()["name"] == "pg-browser"
            assert c.post("/api/v1/auth/logout", headers=own).status_code == 204
            assert c.get("/api/v1/auth/me").json()["via"] == "anonymous"
            log = c.get("/api/v1/activity", params={"limit": 20}, headers=admin).json()["data"]
            assert [e["action"] for e in log[:6]] == [
                "session.end",
                "session.create",
                "token.create",
                "flag.restore",
                "flag.delete",
                "flag.create",
            ]
            assert c.get("/api/v1/activity", headers=reader).status_code == 403
    finally:
        receiver.close()
        store.close()
        get_settings.cache_clear()


def _bearer(store: Store, name: str, scope: Scope) -> dict[str, str]:
    return {"Authorization": "Bearer " + store.access.create_token(name, scope=scope, who="t")[1]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_serve_runs_api_and_dashboard_in_one_process(
    built: Built, store_copy, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    port = _free_port()
    env = {
        **os.environ,
        "BELIEFSCOPE_HOME": str(built.home),
        "BELIEFSCOPE_DATA_ROOTS": f'["{built.root}"]',
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "beliefscope.cli",
            "serve",
            "--store",
            store_copy.url,
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if _get(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            time.sleep(0.3)
        status, body = _get(f"{base}/api/v1/runs")
        assert status == 200 and b'"count":1' in body
        status, page = _get(f"{base}/")
        assert status == 200 and b"_dash-config" in page
        status, body = _get(f"{base}/api/v1/unknown")
        assert status == 404 and b'"status":404' in body
    finally:
        proc.terminate()
        proc.wait(timeout=20)
