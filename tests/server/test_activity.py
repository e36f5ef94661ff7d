"""The activity log through the API and the command line: every state change, with who, what
and when, readable by admins only."""

from __future__ import annotations

from fastapi.testclient import TestClient

from beliefscope.access import COOKIE
from beliefscope.cli import main
from beliefscope.store.engine import Store

OWN = "http://testserver"


def test_every_state_change_is_logged_for_admins(
    client: TestClient, store_copy: Store, auth: dict, capsys
) -> None:  # type: ignore[no-untyped-def]
    before = client.get("/api/v1/activity", params={"limit": 1}, headers=auth).json()
    assert before["count"] > 0  # building the store: default rules stored and applied
    first_new = before["data"][0]["id"] + 1
    made = client.post("/api/v1/tokens", json={"name": "rita", "scope": "review"}, headers=auth)
    assert made.status_code == 201 and made.json()["state"] == "live"
    rita_secret = made.json()["secret"]
    rita = {"Authorization": f"Bearer {rita_secret}"}
    trace = client.get("/api/v1/traces").json()["data"][0]["id"]
    flag = client.post("/api/v1/flags", json={"trace_id": trace, "t0": 1, "t1": 3}, headers=rita)
    flag_id = flag.json()["id"]
    client.patch(f"/api/v1/flags/{flag_id}", json={"state": "confirmed"}, headers=rita)
    client.post(f"/api/v1/flags/{flag_id}/notes", json={"text": "twice"}, headers=rita)
    client.delete(f"/api/v1/flags/{flag_id}", headers=rita)
    client.post(f"/api/v1/flags/{flag_id}/restore", headers=auth)
    rule = {"name": "spiky", "metric": "kl", "threshold": 3, "mode": "mad"}
    client.post("/api/v1/rules", json=rule, headers=auth)
    client.patch("/api/v1/rules/spiky", json={"threshold": 4}, headers=auth)
    hook = client.post("/api/v1/webhooks", json={"url": "http://93.184.215.14/h"}, headers=auth)
    hook_id = hook.json()["id"]
    client.post(f"/api/v1/webhooks/{hook_id}/secret", headers=auth)
    client.delete(f"/api/v1/webhooks/{hook_id}", headers=auth)
    client.post(f"/api/v1/webhooks/{hook_id}/restore", headers=auth)
    login = client.post("/api/v1/auth/login", json={"token": rita_secret}, headers={"Origin": OWN})
    assert login.status_code == 200
    client.cookies.set(COOKIE, client.cookies[COOKIE])  # httpx keeps Secure cookies off http
    assert client.post("/api/v1/auth/logout", headers={"Origin": OWN}).status_code == 204
    assert client.delete("/api/v1/tokens/rita", headers=auth).json()["state"] == "revoked"

    assert client.get("/api/v1/activity").status_code == 401  # open reads do not open it
    assert client.get("/api/v1/activity", headers=rita).status_code == 401  # revoked now
    log = client.get("/api/v1/activity", params={"limit": 100}, headers=auth).json()
    seen = [
        (e["who"], e["action"], e["target"]) for e in reversed(log["data"]) if e["id"] >= first_new
    ]
    assert seen == [
        ("alice", "token.create", "token:rita"),
        ("rita", "flag.create", f"flag:{flag_id}"),
        ("rita", "flag.review", f"flag:{flag_id}"),
        ("rita", "flag.note", f"flag:{flag_id}"),
        ("rita", "flag.delete", f"flag:{flag_id}"),
        ("alice", "flag.restore", f"flag:{flag_id}"),
        ("alice", "rule.create", "rule:spiky"),
        ("alice", "rule.edit", "rule:spiky"),
        ("alice", "webhook.create", f"webhook:{hook_id}"),
        ("alice", "webhook.secret", f"webhook:{hook_id}"),
        ("alice", "webhook.delete", f"webhook:{hook_id}"),
        ("alice", "webhook.restore", f"webhook:{hook_id}"),
        ("rita", "session.create", "token:rita"),
        ("rita", "session.end", "token:rita"),
        ("alice", "token.revoke", "token:rita"),
    ]
    assert all(e["at"] for e in log["data"]) and rita_secret not in str(log)
    review = next(e for e in log["data"] if e["action"] == "flag.review")
    assert review["details"] == {"state": ["open", "confirmed"]}
    edit = next(e for e in log["data"] if e["action"] == "rule.edit")
    assert edit["details"]["changes"] == {"threshold": [3.0, 4.0]}
    flags = client.get("/api/v1/activity", params={"action": "flag"}, headers=auth).json()
    assert flags["count"] == 5 and log["count"] == before["count"] + 15
    one = client.get("/api/v1/activity", params={"target": "rule:spiky"}, headers=auth).json()
    assert [e["action"] for e in one["data"]] == ["rule.edit", "rule.create"]

    assert main(["activity", "--store", store_copy.url, "--action", "webhook"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0].split("\t")[1:4] == [
        "alice",
        "webhook.restore",
        f"webhook:{hook_id}",
    ]
    assert main(["activity", "--store", store_copy.url, "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "token.revoke" in out and "older entries" in out
