"""Access control: scoped tokens for writes, soft deletion, sessions in cookies with an origin
check on every cookie-setting path, throttling, allowed hosts, security headers, non-loopback
binds, the token command, no CORS."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from beliefscope.access import COOKIE
from beliefscope.cli import main
from beliefscope.cli.serve import build_app
from beliefscope.store.access_tables import ApiToken
from beliefscope.store.engine import Store
from server.app import create_app
from tests.server.conftest import Built, make_settings

OWN = "http://testserver"


def _trace_id(client: TestClient) -> int:
    return client.get("/api/v1/traces").json()["data"][0]["id"]


def _bearer(store: Store, name: str, scope: str) -> dict[str, str]:
    secret = store.access.create_token(name, scope=scope, who="tests")[1]  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {secret}"}


def test_writes_need_a_scoped_token_and_history_names_its_holder(
    client: TestClient, store_copy: Store, auth: dict
) -> None:
    reviewer, reader = _bearer(store_copy, "rita", "review"), _bearer(store_copy, "ron", "read")
    body = {"trace_id": _trace_id(client), "t0": 1, "t1": 4, "notes": "box hidden"}
    refused = client.post("/api/v1/flags", json=body)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    wrong = client.post("/api/v1/flags", json=body, headers={"Authorization": "Bearer bsk_nope"})
    assert wrong.status_code == 401
    basic = client.post("/api/v1/flags", json=body, headers={"Authorization": "Basic eDp5"})
    assert basic.status_code == 401
    too_small = client.post("/api/v1/flags", json=body, headers=reader)
    assert too_small.status_code == 403 and "'review'" in too_small.json()["detail"]
    created = client.post("/api/v1/flags", json=body, headers=reviewer)
    assert created.status_code == 201 and created.json()["updated_by"] == "rita"
    flag_id = created.json()["id"]
    client.patch(f"/api/v1/flags/{flag_id}", json={"state": "confirmed"}, headers=reviewer)
    client.post(f"/api/v1/flags/{flag_id}/notes", json={"text": "seen twice"}, headers=reviewer)
    history = client.get(f"/api/v1/flags/{flag_id}/history").json()["data"]
    assert [h["action"] for h in history] == ["create", "review", "review"]
    assert {h["who"] for h in history} == {"rita"}
    flag = client.get(f"/api/v1/flags/{flag_id}").json()
    assert flag["state"] == "confirmed" and flag["notes"].endswith("rita: seen twice")
    listed = client.get("/api/v1/flags", params={"state": "confirmed", "source": "manual"}).json()
    assert [f["id"] for f in listed["data"]] == [flag_id]
    rule = client.post(
        "/api/v1/rules", json={"name": "x", "metric": "kl", "threshold": 1}, headers=reviewer
    )
    assert rule.status_code == 403  # rules need admin
    assert client.delete(f"/api/v1/flags/{flag_id}").status_code == 401
    assert client.delete(f"/api/v1/flags/{flag_id}", headers=reviewer).status_code == 204
    assert client.get(f"/api/v1/flags/{flag_id}").status_code == 404  # hidden...
    assert client.get(f"/api/v1/flags/{flag_id}/history").status_code == 404
    kept = client.get(f"/api/v1/flags/{flag_id}", headers=auth).json()  # ...kept for admins
    assert kept["deleted_by"] == "rita" and kept["state"] == "confirmed"
    assert (
        client.get("/api/v1/flags", params={"deleted": True}, headers=reviewer).status_code == 403
    )
    deleted = client.get("/api/v1/flags", params={"deleted": True}, headers=auth).json()
    assert [f["id"] for f in deleted["data"]] == [flag_id]
    assert client.post(f"/api/v1/flags/{flag_id}/restore", headers=reviewer).status_code == 403
    assert client.post(f"/api/v1/flags/{flag_id}/restore", headers=auth).status_code == 200
    history = client.get(f"/api/v1/flags/{flag_id}/history").json()["data"]
    assert [h["action"] for h in history] == ["create", "review", "review", "delete", "restore"]


def test_a_reviewer_deletes_only_flags_nobody_else_touched(
    client: TestClient, store_copy: Store, auth: dict
) -> None:
    """The probe's finding: any token deleted a flag another user created and confirmed."""
    rita, bob = _bearer(store_copy, "rita", "review"), _bearer(store_copy, "bob", "review")
    body = {"trace_id": _trace_id(client), "t0": 1, "t1": 4}
    flag_id = client.post("/api/v1/flags", json=body, headers=bob).json()["id"]
    client.patch(f"/api/v1/flags/{flag_id}", json={"state": "confirmed"}, headers=bob)
    refused = client.delete(f"/api/v1/flags/{flag_id}", headers=rita)
    assert refused.status_code == 403 and "bob" in refused.json()["detail"]
    assert client.get(f"/api/v1/flags/{flag_id}").json()["state"] == "confirmed"
    assert client.delete(f"/api/v1/flags/{flag_id}", headers=auth).status_code == 204  # admin
    assert len(store_copy.reviews.flag_history(flag_id=flag_id, include_deleted=True)) == 3
    rule = {"name": "everything", "metric": "kl", "threshold": -1e9, "mode": "absolute"}
    assert client.post("/api/v1/rules", json=rule, headers=auth).status_code == 201
    assert client.post("/api/v1/rules/everything/apply", headers=auth).json()["created"] > 0
    rule_flag = client.get("/api/v1/flags", params={"rule": "everything"}).json()["data"][0]["id"]
    refused = client.delete(f"/api/v1/flags/{rule_flag}", headers=auth)
    assert refused.status_code == 400 and "dismiss" in refused.json()["detail"]


def test_revoked_and_expired_tokens_stop_working(
    client: TestClient, store_copy: Store, auth: dict
) -> None:
    assert client.get("/api/v1/auth/me", headers=auth).json()["name"] == "alice"
    store_copy.access.revoke_token("alice", who="tests")
    assert client.get("/api/v1/auth/me", headers=auth).status_code == 401
    body = {"trace_id": _trace_id(client), "t0": 1, "t1": 2}
    assert client.post("/api/v1/flags", json=body, headers=auth).status_code == 401
    soon = datetime.now(UTC) + timedelta(days=1)
    secret = store_copy.access.create_token("eve", scope="review", expires=soon, who="tests")[1]
    eve = {"Authorization": f"Bearer {secret}"}
    me = client.get("/api/v1/auth/me", headers=eve).json()
    assert (me["name"], me["scope"], me["can_write"]) == ("eve", "review", True)
    with store_copy.connect(write=True) as conn:
        past = datetime.now(UTC) - timedelta(seconds=1)
        conn.execute(sa.update(ApiToken).where(ApiToken.name == "eve").values(expires=past))
    expired = client.post("/api/v1/flags", json=body, headers=eve)
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]


def test_cookie_sessions_are_revocable_and_need_our_own_origin(
    built: Built, store_copy: Store, token: str
) -> None:
    app = build_app(make_settings(built, store_copy), store=store_copy)
    with TestClient(app) as client:
        foreign = client.post(
            "/api/v1/auth/login", json={"token": token}, headers={"Origin": "http://evil.example"}
        )
        assert foreign.status_code == 403 and "set-cookie" not in foreign.headers
        bad = client.post(
            "/api/v1/auth/login", json={"token": "bsk_wrong"}, headers={"Origin": OWN}
        )
        assert bad.status_code == 401
        login = client.post("/api/v1/auth/login", json={"token": token}, headers={"Origin": OWN})
        assert login.status_code == 200 and login.json()["name"] == "alice"
        cookie = login.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        assert "secure" in cookie.lower() and "max-age=43200" in cookie.lower()  # 12 h
        session = client.cookies[COOKIE]
        assert session.startswith("bss_") and token not in cookie  # never the token itself
        # a browser sends a Secure cookie to http://localhost; httpx does not: send it ourselves
        client.cookies.set(COOKIE, session)
        body = {"trace_id": _trace_id(client), "t0": 1, "t1": 2}
        assert client.post("/api/v1/flags", json=body).status_code == 403  # no Origin
        evil = client.post("/api/v1/flags", json=body, headers={"Origin": "http://evil.example"})
        assert evil.status_code == 403
        ok = client.post("/api/v1/flags", json=body, headers={"Origin": OWN})
        assert ok.status_code == 201 and ok.json()["updated_by"] == "alice"
        assert client.get("/api/v1/auth/me").json()["via"] == "cookie"
        assert client.post("/api/v1/auth/logout", headers={"Origin": OWN}).status_code == 204
        client.cookies.set(COOKIE, session)  # the old cookie, replayed after sign-out
        assert client.get("/api/v1/auth/me").json()["via"] == "anonymous"
        assert client.post("/api/v1/flags", json=body, headers={"Origin": OWN}).status_code == 401
    insecure = make_settings(built, store_copy, cookie_secure=False)
    with TestClient(create_app(insecure, store=store_copy)) as client:
        login = client.post("/api/v1/auth/login", json={"token": token}, headers={"Origin": OWN})
        assert "secure" not in login.headers["set-cookie"].lower()


def _dash_sign_in(client: TestClient, token: str, origin: str) -> Any:
    """The dashboard's sign-in callback, posted as the browser posts it (its output id as the
    app's own `/_dash-dependencies` names it)."""
    (callback,) = [
        d for d in client.get("/_dash-dependencies").json() if "bs-user.children" in d["output"]
    ]
    outputs = [o.split(".", 1) for o in callback["output"].strip(".").split("...")]
    body = {
        "output": callback["output"],
        "outputs": [{"id": i, "property": p} for i, p in outputs],
        "inputs": [
            {"id": "bs-url", "property": "pathname", "value": "/"},
            {"id": "bs-signin", "property": "n_clicks", "value": 1},
            {"id": "bs-signout", "property": "n_clicks", "value": None},
            {"id": "bs-token", "property": "n_submit", "value": None},
        ],
        "changedPropIds": ["bs-signin.n_clicks"],
        "state": [{"id": "bs-token", "property": "value", "value": token}],
    }
    return client.post("/_dash-update-component", json=body, headers={"Origin": origin})


def test_the_dashboard_sign_in_callback_checks_the_origin(
    built: Built, store_copy: Store, token: str
) -> None:
    """The probe's finding: the callback set the cookie for a foreign Origin."""
    app = build_app(make_settings(built, store_copy), store=store_copy)
    with TestClient(app) as client:
        client.get("/")  # Dash's setup
        foreign = _dash_sign_in(client, token, "http://evil.example")
        assert foreign.status_code == 200, foreign.text
        assert "set-cookie" not in foreign.headers and "cross-origin" in foreign.text
        own = _dash_sign_in(client, token, OWN)
        assert own.status_code == 200 and "signed in as alice" in own.text
        assert f"{COOKIE}=bss_" in own.headers["set-cookie"]
        assert token not in own.headers["set-cookie"]


def test_bad_tokens_are_throttled_per_client_and_logged_without_the_secret(
    built: Built, store_copy: Store, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings(built, store_copy, auth_failures_per_minute=3), store=store_copy)
    guess = "bsk_" + "g" * 43
    caplog.set_level(logging.WARNING, logger="beliefscope.access")
    with TestClient(app) as client:
        for _ in range(3):
            assert (
                client.get("/api/v1/runs", headers={"Authorization": f"Bearer {guess}"}).status_code
                == 401
            )
        throttled = client.get("/api/v1/runs", headers={"Authorization": f"Bearer {guess}"})
        assert throttled.status_code == 429 and 1 <= int(throttled.headers["retry-after"]) <= 60
        # the client is throttled, whatever it presents next, sign-ins included
        assert (
            client.get("/api/v1/runs", headers={"Authorization": f"Bearer {token}"}).status_code
            == 429
        )
        login = client.post("/api/v1/auth/login", json={"token": token}, headers={"Origin": OWN})
        assert login.status_code == 429
        assert client.get("/api/v1/runs").status_code == 200  # open reads without a token go on
    other = TestClient(app, client=("10.1.2.3", 5000))  # another client is not held up
    with other:
        assert (
            other.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code
            == 200
        )
    refusals = [r.getMessage() for r in caplog.records if r.name == "beliefscope.access"]
    assert len(refusals) == 3 and all("testclient" in m for m in refusals)
    assert not any(guess in m or guess[4:20] in m for m in refusals)


def test_sign_in_failures_are_throttled_too(built: Built, store_copy: Store) -> None:
    app = create_app(make_settings(built, store_copy, auth_failures_per_minute=2), store=store_copy)
    with TestClient(app) as client:
        answers = [
            client.post(
                "/api/v1/auth/login", json={"token": f"bsk_guess{i}"}, headers={"Origin": OWN}
            ).status_code
            for i in range(3)
        ]
    assert answers == [401, 401, 429]


def test_only_allowed_hosts_are_answered(built: Built, store_copy: Store, auth: dict) -> None:
    """The probe's finding: `Host: attacker.example` got the flags CSV from a loopback server
    (what a DNS-rebinding page would do)."""
    app = build_app(make_settings(built, store_copy, allowed_hosts=[]), store=store_copy)
    with TestClient(app, base_url="http://attacker.example") as client:
        for path in ("/api/v1/exports/flags", "/api/v1/runs", "/healthz", "/", "/assets/style.css"):
            answer = client.get(path)
            assert answer.status_code == 400 and "attacker.example" in answer.json()["detail"]
            assert answer.headers["x-content-type-options"] == "nosniff"
        assert client.post("/api/v1/flags", json={}, headers=auth).status_code == 400
    for host in ("127.0.0.1:8050", "localhost", "[::1]:8050", "LOCALHOST."):
        with TestClient(app, base_url=f"http://{host}") as client:
            assert client.get("/healthz").status_code == 200, host
    for host in ("127.0.0.1.attacker.example", "localhost:notaport", "evil@localhost"):
        with TestClient(app) as client:
            assert client.get("/healthz", headers={"Host": host}).status_code == 400, host
    named = create_app(
        make_settings(built, store_copy, allowed_hosts=["lab.example"]), store=store_copy
    )
    for host, status in (("lab.example", 200), ("127.0.0.1", 200), ("testserver", 400)):
        with TestClient(named, base_url=f"http://{host}") as client:
            assert client.get("/healthz").status_code == status, host  # loopback: healthchecks
    anyone = create_app(make_settings(built, store_copy, allowed_hosts=["*"]), store=store_copy)
    with TestClient(anyone, base_url="http://attacker.example") as client:
        assert client.get("/healthz").status_code == 200


def test_security_headers_on_every_answer(built: Built, store_copy: Store) -> None:
    app = build_app(make_settings(built, store_copy), store=store_copy)
    with TestClient(app) as client:
        for path in ("/", "/review", "/api/v1/runs", "/api/v1/nothing", "/healthz", "/docs"):
            answer = client.get(path)
            assert answer.headers["x-frame-options"] == "DENY", path
            assert answer.headers["x-content-type-options"] == "nosniff", path
            csp = answer.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, path
        page = client.get("/").headers["content-security-policy"]
        assert "'unsafe-eval'" not in page and "script-src 'self' 'sha256-" in page
        crafted = client.get("/_dash-component-suites/dash/..%2f..%2f..")
        assert crafted.status_code == 404 and "x-frame-options" in crafted.headers


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
    assert (
        main(["token", "--store", url, "create", "bob", "--scope", "read", "--expires", "30d"]) == 0
    )
    out = capsys.readouterr().out
    secret = out.splitlines()[0]
    found = store_copy.access.token_for_secret(secret)
    assert secret.startswith("bsk_") and found is not None and found.name == "bob"
    assert found.scope == "read" and "scope read" in out
    assert found.expires is not None
    assert abs((found.expires - datetime.now(UTC)).total_seconds() - 30 * 86400) < 60
    assert main(["token", "--store", url, "create", "dan"]) == 0  # default scope: review
    dan = capsys.readouterr().out.splitlines()[0]
    assert store_copy.access.token_for_secret(dan).scope == "review"  # type: ignore[union-attr]
    assert main(["token", "--store", url, "create", "bob"]) == 2  # names are unique
    assert main(["token", "--store", url, "create", "x", "--expires", "soon"]) == 2
    assert main(["token", "--store", url, "list"]) == 0
    listing = capsys.readouterr().out
    assert "bob" in listing and secret not in listing and dan not in listing
    bob_line = next(line for line in listing.splitlines() if line.startswith("bob"))
    assert "\tread\t" in bob_line and "live" in bob_line and "expires never" not in bob_line
    assert main(["token", "--store", url, "revoke", "bob"]) == 0
    assert store_copy.access.token_for_secret(secret) is None
    assert main(["token", "--store", url, "revoke", "bob"]) == 2
    who = {e.who for e in store_copy.activity.list_activity(action="token").items}
    assert len(who) == 1 and who.pop().startswith("cli:")
