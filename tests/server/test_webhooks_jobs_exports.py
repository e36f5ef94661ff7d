"""Webhooks against a receiver on localhost (allowed by `webhook_allow`), ingest jobs through
the API, exports."""

from __future__ import annotations

import io
import json
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from beliefscope.store.engine import Store
from server.app import create_app
from tests.builders import make_world
from tests.server.conftest import Built, make_settings, wait_for_job


class Receiver:
    """A real HTTP server on localhost that records POSTs (body, raw bytes, headers) and
    answers `status` (with `location` for a redirect) after `delay_s`."""

    def __init__(self, status: int = 200, *, delay_s: float = 0.0, location: str = "") -> None:
        self.status = status
        self.bodies: list[dict] = []
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.got = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers["Content-Length"])
                raw = self.rfile.read(length)
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, raw))
                receiver.bodies.append(json.loads(raw))
                receiver.got.set()
                time.sleep(delay_s)
                self.send_response(receiver.status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def app(built: Built, store_copy: Store) -> FastAPI:
    """The API with loopback receivers allowed (a deliberate local receiver); the tests run the
    webhook passes themselves."""
    settings = make_settings(built, store_copy, webhook_allow=["127.0.0.1"])
    return create_app(settings, store=store_copy, webhook_interval_s=3600)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _flag(client: TestClient, auth: dict, severity: str) -> int:
    trace = client.get("/api/v1/traces").json()["data"][0]["id"]
    body = {"trace_id": trace, "t0": 2, "t1": 3, "severity": severity}
    answer = client.post("/api/v1/flags", json=body, headers=auth)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def test_webhook_posts_new_flags_at_or_above_severity(
    app: FastAPI, client: TestClient, auth: dict, receiver: Receiver
) -> None:
    hook = client.post(
        "/api/v1/webhooks", json={"url": receiver.url, "min_severity": "medium"}, headers=auth
    )
    assert hook.status_code == 201 and hook.json()["created_by"] == "alice"
    worker = app.state.ctx.webhooks
    assert worker.run_once() == (0, 0)  # the flags from before registration are not sent
    low, high = _flag(client, auth, "low"), _flag(client, auth, "high")
    assert worker.run_once() == (1, 1)
    assert [b["flag"]["id"] for b in receiver.bodies] == [high]
    body = receiver.bodies[0]
    assert body["event"] == "flag.created" and body["flag"]["severity"] == "high"
    assert body["link"].endswith(f"/api/v1/flags/{high}")
    assert worker.run_once() == (0, 0)  # each flag once
    deliveries = client.get(f"/api/v1/webhooks/{hook.json()['id']}/deliveries", headers=auth).json()
    assert deliveries["count"] == 1 and deliveries["data"][0]["state"] == "delivered"
    assert client.get(f"/api/v1/flags/{low}").json()["severity"] == "low"  # stored, not sent


def test_failed_deliveries_retry_with_backoff_then_show_as_failed(
    app: FastAPI, client: TestClient, auth: dict
) -> None:
    broken = Receiver(status=500)
    try:
        hook = client.post(
            "/api/v1/webhooks", json={"url": broken.url, "min_severity": "low"}, headers=auth
        ).json()
        worker = app.state.ctx.webhooks
        # long enough that the "not due yet" check below holds on a loaded machine
        worker.backoff_s, worker.max_attempts = 1.0, 3
        _flag(client, auth, "low")
        worker.run_once()
        first = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=auth).json()
        first = first["data"][0]
        assert (
            first["state"] == "pending" and first["attempts"] == 1 and first["last_status"] == 500
        )
        assert worker.run_once() == (0, 0)  # the retry is not due yet
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            worker.run_once()
            state = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=auth)
            state = state.json()["data"][0]
            if state["state"] == "failed":
                break
            time.sleep(0.05)
        assert state["state"] == "failed" and state["attempts"] == 3
        assert state["last_error"] and len(broken.bodies) == 3
        assert client.get(f"/api/v1/webhooks/{hook['id']}").json()["n_failed"] == 1
        failed = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", params={"state": "failed"})
        assert failed.json()["count"] == 1
    finally:
        broken.close()
    dead = client.post(
        "/api/v1/webhooks",
        json={"url": "http://127.0.0.1:9/nothing", "min_severity": "low"},
        headers=auth,
    ).json()
    _flag(client, auth, "high")
    app.state.ctx.webhooks.run_once()
    record = client.get(f"/api/v1/webhooks/{dead['id']}/deliveries", headers=auth).json()
    record = record["data"][0]
    assert record["last_status"] is None and "refused" in record["last_error"].lower()
    assert client.delete(f"/api/v1/webhooks/{dead['id']}", headers=auth).status_code == 204


def test_ingest_job_from_the_api(
    client: TestClient, built: Built, auth: dict, tmp_path: Path
) -> None:
    make_world(built.root / "more" / "replay", episodes=1, length=20, seed=5)
    ckpt = sorted(built.run_dir.glob("ckpt-*.safetensors"))[-1]
    shutil.copyfile(ckpt, built.root / "more" / ckpt.name)
    try:
        answer = client.post(
            "/api/v1/jobs", json={"root": str(built.root / "more"), "run": "more"}, headers=auth
        )
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
        job = wait_for_job(client, job_id)
        assert job["state"] == "done" and job["args"]["started_by"] == "alice"
        started = client.get("/api/v1/activity", params={"action": "job"}, headers=auth).json()
        assert [(e["who"], e["target"]) for e in started["data"]] == [("alice", f"job:{job_id}")]
        assert job["n_errors"] == 0 and job["done"] == job["total"] == 1
        assert job["n_errors"] == client.get(f"/api/v1/jobs/{job_id}/errors").json()["count"]
        runs = {r["name"]: r for r in client.get("/api/v1/runs").json()["data"]}
        assert len(runs) == 2
        # registered like an ingest from the command line: the same run and job fields
        (first,) = [j for j in client.get("/api/v1/jobs").json()["data"] if j["id"] != job_id]
        assert set(job["args"]) == set(first["args"]) and job["args"]["posterior"] == "mode"
        built_run = next(r for name, r in runs.items() if name != "more")
        assert (
            (runs["more"]["format"], runs["more"]["family"])
            == (
                built_run["format"],
                built_run["family"],
            )
            != (None, None)
        )
    finally:
        shutil.rmtree(built.root / "more")
    assert (
        client.post(
            "/api/v1/jobs", json={"root": str(built.root / "missing")}, headers=auth
        ).status_code
        == 404
    )
    assert client.post("/api/v1/jobs", json={"root": str(built.root)}).status_code == 401


def test_an_api_ingest_of_a_dir_without_checkpoints_stores_nothing(
    client: TestClient, built: Built, auth: dict
) -> None:
    empty = built.root / "episodes-only"
    make_world(empty / "replay", episodes=1, length=20, seed=6)
    try:
        answer = client.post("/api/v1/jobs", json={"root": str(empty)}, headers=auth)
    finally:
        shutil.rmtree(empty)
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith(f"{empty}: no checkpoints found; searched every")
    assert client.get("/api/v1/runs").json()["count"] == 1
    assert client.get("/api/v1/jobs").json()["count"] == 1


def test_exports_csv_and_parquet(client: TestClient, auth: dict) -> None:
    run = client.get("/api/v1/runs").json()["data"][0]["name"]
    csv = client.get("/api/v1/exports/traces", params={"run": run})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    frame = pd.read_csv(io.StringIO(csv.text))
    assert len(frame) == 2 * 3 * 40 and {"t", "kl", "correction"} <= set(frame.columns)
    parquet = client.get("/api/v1/exports/traces", params={"run": run, "format": "parquet"})
    table = pd.read_parquet(io.BytesIO(parquet.content))
    assert len(table) == len(frame)
    flag_id = _flag(client, auth, "high")
    flags = client.get("/api/v1/exports/flags", params={"run": run})
    assert flags.status_code == 200
    exported = pd.read_csv(io.StringIO(flags.text))
    assert len(exported) == client.get("/api/v1/flags").json()["count"]
    assert flag_id in set(exported["flag"])
    assert client.get("/api/v1/exports/traces", params={"run": "nope"}).status_code == 404
