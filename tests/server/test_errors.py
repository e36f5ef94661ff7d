"""Bad input: oversize bodies, malformed bodies, an unreachable store; error bodies stay
`{"detail", "status"}` without stack traces."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi.testclient import TestClient

from beliefscope.config import Settings
from beliefscope.store.engine import Store, create_engine
from server.app import MAX_BODY_BYTES, create_app


def test_oversize_bodies_get_413(client: TestClient, auth: dict) -> None:
    big = b"{" + b" " * (MAX_BODY_BYTES + 10) + b"}"
    declared = client.post(
        "/api/v1/flags", content=big, headers={**auth, "content-type": "application/json"}
    )
    assert declared.status_code == 413 and declared.json()["status"] == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        yield b'{"trace_id": 1, "notes": "'
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    streamed = client.post(
        "/api/v1/flags", content=chunks(), headers={**auth, "content-type": "application/json"}
    )
    assert streamed.status_code == 413


def test_malformed_bodies_name_the_field(client: TestClient, auth: dict) -> None:
    missing = client.post("/api/v1/flags", json={"t0": 1, "t1": 2}, headers=auth)
    assert missing.status_code == 422 and "body.trace_id" in missing.json()["detail"]
    typed = client.post("/api/v1/flags", json={"trace_id": "x", "t0": 1, "t1": 2}, headers=auth)
    assert typed.status_code == 422 and "trace_id" in typed.json()["detail"]
    extra = client.post("/api/v1/webhooks", json={"url": "http://x.test/", "evil": 1}, headers=auth)
    assert extra.status_code == 422 and "evil" in extra.json()["detail"]
    broken = client.post(
        "/api/v1/flags", content=b"{not json", headers={**auth, "content-type": "application/json"}
    )
    assert broken.status_code == 422 and "Traceback" not in broken.text
    bad_url = client.post("/api/v1/webhooks", json={"url": "file:///etc/passwd"}, headers=auth)
    assert bad_url.status_code == 422 and "url" in bad_url.json()["detail"]
    span = client.post("/api/v1/flags", json={"trace_id": 1, "t0": 5, "t1": 999}, headers=auth)
    assert span.status_code == 400 and "999" in span.json()["detail"]


def test_unreachable_store_answers_503(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"))
    settings = Settings(store=store.url, home=tmp_path, host="127.0.0.1")
    with TestClient(create_app(settings, store=store), base_url="http://127.0.0.1") as c:
        for path in ("/healthz", "/api/v1/runs", "/api/v1/flags"):
            answer = c.get(path)
            assert answer.status_code == 503, (path, answer.text)
            assert answer.json()["status"] == 503 and "Traceback" not in answer.text
