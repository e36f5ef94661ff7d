"""Every operation of the OpenAPI document, called with each scope and with none, on a server
with open reads and one without: 401 and 403 exactly where the operation's declared scope says,
and the declared scopes follow the policy (writes need `review`; writes on rules, webhooks,
tokens, ingest jobs and runs need `admin`). The routes come from the document, so a new route
is walked (and must declare a scope) without touching this test."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from beliefscope.store.engine import Store
from beliefscope.values.access import SCOPES
from server.app import create_app
from server.deps import MAX_ID
from tests.server.conftest import Built, make_settings

UNSCOPED_TAGS = {"auth", "meta"}
"""Signing in works without being signed in; `/healthz` answers load balancers."""
ADMIN_TAGS = {"rules", "webhooks", "tokens", "jobs", "runs", "activity"}
REVIEW_TAGS = {"flags"}
WRITES = {"post", "put", "patch", "delete"}


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in {"get", *WRITES}
    ]


def declared_scope(op: dict[str, Any]) -> str | None:
    """The strongest scope the operation's security requirement names (None: no token)."""
    named = {s for requirement in op.get("security", []) for s in requirement.get("token", [])}
    return max(named, key=SCOPES.index) if named else None


def _url(path: str, op: dict[str, Any]) -> str:
    """`path` with each path parameter filled by a value that names nothing (404 after the
    access check: the walk changes no state)."""
    for param in op.get("parameters", []):
        if param["in"] == "path":
            kind = param["schema"].get("type")
            value = str(MAX_ID) if kind == "integer" else "nothing-here"
            path = path.replace("{" + param["name"] + "}", value)
    return path


def test_declared_scopes_follow_the_policy(client: TestClient) -> None:
    ops = _operations(client.get("/openapi.json").json())
    assert len(ops) > 40  # the document is the route list
    for method, path, op in ops:
        tags, scope = set(op.get("tags", [])), declared_scope(op)
        if tags & UNSCOPED_TAGS:
            assert scope is None, (method, path)
            continue
        assert scope is not None, f"{method.upper()} {path} declares no scope"
        if method in WRITES:
            assert tags & (ADMIN_TAGS | REVIEW_TAGS), (
                f"{method.upper()} {path}: {tags} has no policy"
            )
            wanted = "admin" if tags & ADMIN_TAGS else "review"
            minimum = {"review": ("review", "admin"), "admin": ("admin",)}[wanted]
            assert scope in minimum, f"{method.upper()} {path} needs {wanted}, declares {scope}"
    needs_admin = {(m, p) for m, p, op in ops if declared_scope(op) == "admin" and m == "get"}
    assert {("get", "/api/v1/activity"), ("get", "/api/v1/tokens")} <= needs_admin


@pytest.mark.parametrize("open_reads", [True, False])
def test_every_operation_answers_401_or_403_exactly_where_declared(
    built: Built, store_copy: Store, open_reads: bool
) -> None:
    settings = make_settings(built, store_copy, host="0.0.0.0", open_reads=open_reads)
    tokens = {
        scope: store_copy.access.create_token(f"walker-{scope}", scope=scope, who="tests")[1]
        for scope in SCOPES
    }
    walked = 0
    with TestClient(create_app(settings, store=store_copy, webhook_interval_s=3600)) as client:
        for method, path, op in _operations(client.get("/openapi.json").json()):
            need = declared_scope(op)
            if need is None:
                continue
            url = _url(path, op)
            for have in (None, *SCOPES):
                headers = {} if have is None else {"Authorization": f"Bearer {tokens[have]}"}
                kwargs: dict[str, Any] = {"headers": headers}
                if method in WRITES and method != "delete":
                    kwargs["json"] = {}
                status = client.request(method.upper(), url, **kwargs).status_code
                if have is None:
                    expected = None if need == "read" and open_reads else 401
                elif SCOPES.index(have) < SCOPES.index(need):
                    expected = 403
                else:
                    expected = None
                what = f"{method.upper()} {url} with {have or 'no token'} (needs {need})"
                if expected is None:
                    assert status not in (401, 403), f"{what}: {status}"
                else:
                    assert status == expected, f"{what}: {status}"
                walked += 1
    assert walked > 40 * 4
