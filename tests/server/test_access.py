"""Access control: tokens for writes, cookie sessions with an origin check, non-loopback
binds, the token command, no CORS."""

from __future__ import annotations

from fastapi.testclient import TestClient

from beliefscope.access import COOKIE
from beliefscope.cli import main
from beliefscope.store.engine import Store
from server.app import create_app
from tests.server.conftest import Built, make_settings


def _trace_id(client: TestClient) -> int:
    return client.get("/api/v1/traces").json()["data"][0]["id"]


def test_writes_need_a_token_and_history_names_its_holder(client: TestClient, auth: dict) -> None:
    body = {"trace_id": _trace_id(client), "t0": 1, "t1": 4, "notes": "box hidden"}
    refused = client.post("/api/v1/flags", json=body)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    wrong = client.post("/api/v1/flags", json=body, headers={"Authorization": "Bearer bsk_nope"})
    assert wrong.status_code == 401
    basic = client.post("/api/v1/flags", json=body, headers={"Authorization": "Basic eDp5"})
    assert basic.status_code == 401
    created = client.post("/api/v1/flags", json=body, headers=auth)
    assert created.status_code == 201 and created.json()["updated_by"] == "alice"
    flag_id = created.json()["id"]
    client.patch(f"/api/v1/flags/{flag_id}", json={"state": "confirmed"}, headers=auth)
    client.post(f"/api/v1/flags/{flag_id}/notes", json={"text": "seen twice"}, headers=auth)
    history = client.get(f"/api/v1/flags/{flag_id}/history").json()["data"]
    assert [h["action"] for h in history] == ["create", "review", "review"]
    assert {h["who"] for h in history} == {"alice"}
    flag = client.get(f"/api/v1/flags/{flag_id}").json()
    assert flag["state"] == "confirmed" and flag["notes"].endswith("alice: seen twice")
    listed = client.get("/api/v1/flags", params={"state": "confirmed", "source": "manual"}).json()
    assert [f["id"] for f in listed["data"]] == [flag_id]
    assert client.delete(f"/api/v1/flags/{flag_id}").status_code == 401
    assert client.delete(f"/api/v1/flags/{flag_id}", headers=auth).status_code == 204
    assert client.get(f"/api/v1/flags/{flag_id}").status_code == 404


def test_revoked_token_stops_working(client: TestClient, store_copy: Store, auth: dict) -> None:
    assert client.get("/api/v1/auth/me", headers=auth).json()["name"] == "alice"
    store_copy.access.revoke_token("alice")
    assert client.get("/api/v1/auth/me", headers=auth).status_code == 401
    body = {"trace_id": _trace_id(client), "t0": 1, "t1": 2}
    assert client.post("/api/v1/flags", json=body, headers=auth).status_code == 401


def test_cookie_login_writes_need_our_own_origin(client: TestClient, token: str) -> None:
    own = "http://testserver"
    assert (
        client.post(
            "/api/v1/auth/login", json={"token": "bsk_wrong"}, headers={"Origin": own}
        ).status_code
        == 401
    )
    login = client.post("/api/v1/auth/login", json={"token": token}, headers={"Origin": own})
    assert login.status_code == 200 and login.json()["name"] == "alice"
    cookie = login.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
    # a browser sends a Secure cookie to http://127.0.0.1; httpx does not: send it ourselves
    client.cookies.set(COOKIE, token)
    body = {"trace_id": _trace_id(client), "t0": 1, "t1": 2}
    assert client.post("/api/v1/flags", json=body).status_code == 403  # cookie but no Origin
    evil = client.post("/api/v1/flags", json=body, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403
    ok = client.post("/api/v1/flags", json=body, headers={"Origin": own})
    assert ok.status_code == 201 and ok.json()["updated_by"] == "alice"
    assert client.get("/api/v1/auth/me").json()["via"] == "cookie"
    client.post("/api/v1/auth/logout")
    client.cookies.clear()
    assert client.get("/api/v1/auth/me").json()["via"] == "anonymous"


def test_no_cors_headers_for_other_origins(client: TestClient) -> None:
    answer = client.get("/api/v1/runs", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in answer.headers
    preflight = client.options(
        "/api/v1/flags",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_non_loopback_bind_needs_tokens_for_reads(
    built: Built, store_copy: Store, token: str
) -> None:
    closed = create_app(make_settings(built, store_copy, host="0.0.0.0"), store=store_copy)
    with TestClient(closed) as c:
        assert c.get("/api/v1/runs").status_code == 401
        assert (
            c.get("/api/v1/runs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        )
        assert c.get("/healthz").status_code == 200
    opened = create_app(
        make_settings(built, store_copy, host="0.0.0.0", open_reads=True),
        store=store_copy,
    )
    with TestClient(opened) as c:
        assert c.get("/api/v1/runs").status_code == 200
        assert (
            c.post("/api/v1/rules", json={"name": "x", "metric": "kl", "threshold": 1}).status_code
            == 401
        )


def test_token_command(store_copy: Store, capsys) -> None:  # type: ignore[no-untyped-def]
    url = store_copy.url
    assert main(["token", "--store", url, "create", "bob"]) == 0
    secret = capsys.readouterr().out.splitlines()[0]
    assert secret.startswith("bsk_") and store_copy.access.token_for_secret(secret).name == "bob"
    assert main(["token", "--store", url, "create", "bob"]) == 2  # names are unique
    assert main(["token", "--store", url, "list"]) == 0
    listing = capsys.readouterr().out
    assert "bob" in listing and secret not in listing
    assert main(["token", "--store", url, "revoke", "bob"]) == 0
    assert store_copy.access.token_for_secret(secret) is None
    assert main(["token", "--store", url, "revoke", "bob"]) == 2
