"""Unknown query parameters are refused on every route, naming the ones it accepts, so a
misspelt filter never silently answers as if no filter had been given."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_flags_with_invented_filters_is_a_422_naming_the_accepted_ones(client: TestClient) -> None:
    answer = client.get("/api/v1/flags", params={"episode": 52, "checkpoint": 1})
    assert answer.status_code == 422
    body = answer.json()
    assert {e["field"] for e in body["errors"]} == {"query.episode", "query.checkpoint"}
    assert "unknown query parameter; GET /api/v1/flags accepts: " in body["detail"]
    for accepted in ("checkpoint_id", "episode_id", "limit", "offset"):
        assert accepted in body["detail"]
    assert client.get("/api/v1/flags", params={"episode_id": 1}).status_code == 200


def test_every_get_route_refuses_an_unknown_parameter(client: TestClient) -> None:
    """Walks the OpenAPI document: each GET operation, with its declared query parameters
    named in the answer, whatever its path parameters (the check runs before the lookup)."""
    paths = client.get("/openapi.json").json()["paths"]
    walked = 0
    for path, operations in paths.items():
        if "get" not in operations:
            continue
        declared = sorted(
            p["name"] for p in operations["get"].get("parameters", []) if p["in"] == "query"
        )
        url = re.sub(r"\{[^}]+\}", "1", path)
        answer = client.get(url, params={"no_such_parameter": "x"})
        assert answer.status_code == 422, (path, answer.status_code, answer.text[:200])
        detail = answer.json()["detail"]
        assert detail.startswith("query.no_such_parameter: unknown query parameter; "), detail
        expected = f"accepts: {', '.join(declared)}" if declared else f"{url} takes none"
        assert expected in detail, (path, detail)
        walked += 1
    assert walked >= 20, walked
