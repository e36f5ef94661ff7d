"""Read endpoints over a real ingested store: shapes, pagination, downsampling, errors."""

from __future__ import annotations

import math

from fastapi import FastAPI
from fastapi.testclient import TestClient

from beliefscope.values.traces import METRICS


def _first(client: TestClient, path: str) -> dict:
    body = client.get(path).json()
    assert body["count"] >= 1, body
    return body["data"][0]


def test_runs_checkpoints_episodes(client: TestClient) -> None:
    runs = client.get("/api/v1/runs").json()
    assert runs["count"] == 1 and runs["data"][0]["n_checkpoints"] == 2
    run = runs["data"][0]
    assert client.get(f"/api/v1/runs/{run['id']}").json()["name"] == run["name"]
    ckpts = client.get(f"/api/v1/runs/{run['id']}/checkpoints").json()
    assert ckpts["count"] == 2 and [c["step"] for c in ckpts["data"]] == sorted(
        c["step"] for c in ckpts["data"]
    )
    assert "source_path" not in ckpts["data"][0]  # server file paths are not part of the API
    eps = client.get(f"/api/v1/runs/{run['id']}/episodes", params={"limit": 2}).json()
    assert eps["count"] == 3 and len(eps["data"]) == 2 and eps["limit"] == 2
    rest = client.get(f"/api/v1/runs/{run['id']}/episodes", params={"offset": 2}).json()
    assert len(rest["data"]) == 1 and rest["data"][0]["id"] not in {e["id"] for e in eps["data"]}
    ep = eps["data"][0]
    assert ep["has_truth"] and ep["length"] == 40
    assert client.get(f"/api/v1/episodes/{ep['id']}").json()["key"] == ep["key"]
    traces = client.get(f"/api/v1/episodes/{ep['id']}/traces").json()
    assert traces["count"] == 2  # one filter trace per checkpoint


def test_trace_series_full_range_and_downsampled(client: TestClient) -> None:
    trace = _first(client, "/api/v1/traces")
    full = client.get(f"/api/v1/traces/{trace['id']}/series").json()
    assert full["length"] == 40 and set(full["series"]) | set(full["absent"]) == set(METRICS)
    kl = full["series"]["kl"]
    assert kl["t"] == list(range(40)) and len(kl["values"]) == 40
    window = client.get(
        f"/api/v1/traces/{trace['id']}/series",
        params={"metrics": "kl,correction", "t0": 5, "t1": 9},
    ).json()
    assert set(window["series"]) == {"kl", "correction"}
    assert window["series"]["kl"]["t"] == [5, 6, 7, 8, 9]
    assert window["series"]["kl"]["values"] == kl["values"][5:10]
    small = client.get(
        f"/api/v1/traces/{trace['id']}/series", params={"metrics": "kl", "max_points": 10}
    ).json()
    assert small["downsampled"] and len(small["series"]["kl"]["t"]) <= 10
    assert small["series"]["kl"]["t"][-1] == 39  # the last point survives
    # deter_delta is NaN at the reset step: sent as a string, not null
    delta = full["series"]["deter_delta"]["values"]
    assert delta[0] == "NaN" and all(isinstance(v, float) for v in delta[1:])
    arr = client.get(f"/api/v1/traces/{trace['id']}/arrays/kl_groups").json()
    assert arr["shape"][0] == 40 and len(arr["values"]) == 40
    assert all(not isinstance(v, float) or math.isfinite(v) for v in arr["values"][0])


def test_summaries_findings_jobs_rules(client: TestClient) -> None:
    run = _first(client, "/api/v1/runs")
    ckpt = _first(client, f"/api/v1/runs/{run['id']}/checkpoints")
    summary = client.get(f"/api/v1/checkpoints/{ckpt['id']}/summary").json()
    assert summary["n_traces"] == 3 and summary["kl"]["n_finite"] == 3 * 40
    summaries = client.get(f"/api/v1/runs/{run['id']}/summaries").json()
    assert summaries["count"] == 2
    assert client.get(f"/api/v1/runs/{run['id']}/findings").status_code == 200
    jobs = client.get("/api/v1/jobs").json()
    assert jobs["count"] == 1 and jobs["data"][0]["state"] == "done"
    job = client.get(f"/api/v1/jobs/{jobs['data'][0]['id']}").json()
    assert job["kind"] == "ingest"
    assert client.get(f"/api/v1/jobs/{job['id']}/errors").json()["count"] == job["n_errors"]
    rules = client.get("/api/v1/rules").json()
    assert rules["count"] >= 1 and rules["data"][0]["version"] >= 1
    assert client.get("/api/v1/scores").json()["count"] == 0


def test_rule_threshold_of_a_trace(app: FastAPI, client: TestClient) -> None:
    trace = _first(client, "/api/v1/traces")
    found = client.get("/api/v1/rules/kl-spike/threshold", params={"trace_id": trace["id"]})
    body = found.json()
    assert found.status_code == 200 and (body["rule"], body["metric"]) == ("kl-spike", "kl")
    ctx = app.state.ctx
    rule = ctx.store.reviews.get_rule(name="kl-spike").rule
    expected = ctx.reviews.effective_threshold(
        rule, ctx.store.queries.get_trace(trace_id=trace["id"])
    )
    assert body["threshold"] == expected and body["version"] == rule.version
    assert (
        client.get("/api/v1/rules/nope/threshold", params={"trace_id": trace["id"]}).status_code
        == 404
    )
    assert (
        client.get("/api/v1/rules/kl-spike/threshold", params={"trace_id": 999}).status_code == 404
    )
    assert client.get("/api/v1/rules/kl-spike/threshold").status_code == 422


def test_unknown_ids_and_bad_queries(client: TestClient) -> None:
    for path in (
        "/api/v1/runs/999",
        "/api/v1/runs/999/checkpoints",
        "/api/v1/checkpoints/999",
        "/api/v1/checkpoints/999/summary",
        "/api/v1/episodes/999",
        "/api/v1/traces/999",
        "/api/v1/traces/999/series",
        "/api/v1/flags/999",
        "/api/v1/jobs/999",
        "/api/v1/rules/no-such-rule",
        "/api/v1/webhooks/999",
        "/api/v1/runs/abc",
        "/api/v1/no/such/endpoint",
    ):
        answer = client.get(path)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["status"] == 404 and answer.json()["detail"]
    bad = client.get("/api/v1/runs", params={"limit": 0})
    assert bad.status_code == 422 and "query.limit" in bad.json()["detail"]
    trace = _first(client, "/api/v1/traces")
    unknown = client.get(f"/api/v1/traces/{trace['id']}/series", params={"metrics": "nope"})
    assert unknown.status_code == 400 and "nope" in unknown.json()["detail"]
    backwards = client.get(f"/api/v1/traces/{trace['id']}/series", params={"t0": 9, "t1": 3})
    assert backwards.status_code == 400


def test_variant_filters_accept_the_old_name_probe(client: TestClient, auth: dict) -> None:
    by_variant = client.get("/api/v1/traces", params={"variant": "filter"}).json()
    by_probe = client.get("/api/v1/traces", params={"probe": "filter"}).json()
    assert by_variant == by_probe and by_variant["count"] >= 1
    assert {t["variant"] for t in by_variant["data"]} == {"filter"}
    assert client.get("/api/v1/traces", params={"variant": "delay:9"}).json()["count"] == 0
    old = {"name": "old-body", "metric": "kl", "threshold": 3, "probe": "delay:1"}
    created = client.post("/api/v1/rules", json=old, headers=auth)
    assert created.status_code == 201 and created.json()["variant"] == "delay:1"


def test_flags_sort_by_severity_rank_then_peak(client: TestClient, auth: dict) -> None:
    trace = _first(client, "/api/v1/traces")
    for t0, severity in enumerate(["medium", "high", "low", "medium", "high"]):
        body = {"trace_id": trace["id"], "t0": 3 * t0, "t1": 3 * t0 + 2, "severity": severity}
        assert client.post("/api/v1/flags", json=body, headers=auth).status_code == 201
    body = client.get("/api/v1/flags", params={"sort": "-severity,-peak", "limit": 1000}).json()
    rank = {"low": 0, "medium": 1, "high": 2}
    got = [(rank[f["severity"]], f["peak"]) for f in body["data"]]
    assert body["count"] >= 5 and [s for s, _ in got][:2] == [2, 2], got
    assert got == sorted(got, key=lambda r: (-r[0], -(r[1] if r[1] is not None else -1e300)))
    bad = client.get("/api/v1/flags", params={"sort": "colour"})
    assert bad.status_code == 400 and "severity" in bad.json()["detail"]
