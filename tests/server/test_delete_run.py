"""`DELETE /api/v1/runs/{id}`: a writer removes a run and all of it; a reader may not; a run
being ingested is kept until its ingest ends."""

from __future__ import annotations

from fastapi.testclient import TestClient

from beliefscope.store.engine import Store


def test_deleting_a_run_needs_a_token_and_removes_all_of_it(
    client: TestClient, store_copy: Store, auth: dict
) -> None:
    (run,) = client.get("/api/v1/runs").json()["data"]
    assert client.delete(f"/api/v1/runs/{run['id']}").status_code == 401
    gone = client.delete(f"/api/v1/runs/{run['id']}", headers=auth)
    assert gone.status_code == 200
    assert gone.json() == {
        "name": run["name"],
        "checkpoints": run["n_checkpoints"],
        "episodes": run["n_episodes"],
        "traces": run["n_traces"],
    }
    assert client.get("/api/v1/runs").json()["count"] == 0
    assert client.get("/api/v1/flags").json()["count"] == 0
    assert client.get("/api/v1/jobs").json()["count"] == 0
    with store_copy.connect() as conn:  # steps have no foreign key: they must go explicitly
        assert conn.exec_driver_sql("SELECT count(*) FROM steps").scalar() == 0
    assert client.delete(f"/api/v1/runs/{run['id']}", headers=auth).status_code == 404


def test_a_run_being_ingested_is_not_deleted(
    client: TestClient, store_copy: Store, auth: dict
) -> None:
    (run,) = client.get("/api/v1/runs").json()["data"]
    job = store_copy.writer.create_job("ingest", run_id=run["id"])
    store_copy.writer.start_job(job)
    refused = client.delete(f"/api/v1/runs/{run['id']}", headers=auth)
    assert refused.status_code == 409
    assert f"is being ingested (job {job})" in refused.json()["detail"]
    store_copy.writer.finish_job(job, failed=True, message="stopped")
    assert client.delete(f"/api/v1/runs/{run['id']}", headers=auth).status_code == 200
