"""Path traversal: MLflow-style payloads against every place a path could sneak in.

The API takes no paths except the ingest root, which must lie in a registered data root; frames
map ids to stored paths, which are re-checked for containment (a poisoned row or a symlink out
of the root must not leak a file).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from beliefscope.cli.serve import build_app
from beliefscope.store.engine import Store
from beliefscope.store.tables import Checkpoint, Episode
from server.paths import contained, fully_decoded
from tests.builders import make_world
from tests.server.conftest import Built, make_settings, wait_for_job

SECRET = "root:x:0:0"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside every data root, with a file that must never be served."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "passwd").write_text(SECRET + "\n")
    return folder


def _payloads(root: Path, outside: Path) -> list[str]:
    rel = "/".join([".."] * (len(root.parts) + 2)) + str(outside)
    return [
        str(outside),
        f"{root}/../../..{outside}",
        rel,
        f"{root}/%2e%2e/%2e%2e/%2e%2e{outside}",
        f"{root}/%252e%252e%252f%252e%252e%252f%252e%252e{outside}",
        f"{root}/..%2f..%2f..%2f..{outside}",
        f"{root}%2f..%2f..%2f..{outside}",
        f"{root}/link-out",
        f"{root}\x00/run",
        "file:///etc",
        "~/../../etc",
        "",
        " ",
    ]


def test_contained_refuses_every_payload(built: Built, outside: Path) -> None:
    (built.root / "link-out").symlink_to(outside, target_is_directory=True)
    try:
        for payload in _payloads(built.root, outside):
            with pytest.raises(Exception) as err:
                contained(payload, [built.root])
            assert getattr(err.value, "status", None) == 404, payload
        assert contained(str(built.root / "run"), [built.root]) == (built.root / "run").resolve()
        assert contained(f"{built.root}/run/%2e%2e/run", [built.root]).name == "run"
    finally:
        (built.root / "link-out").unlink()
    assert fully_decoded("%25252e%25252e") == ".."


def test_ingest_root_payloads_start_no_job(
    client: TestClient, built: Built, auth: dict, outside: Path
) -> None:
    (built.root / "link-out").symlink_to(outside, target_is_directory=True)
    try:
        before = client.get("/api/v1/jobs").json()["count"]
        for payload in _payloads(built.root, outside):
            answer = client.post("/api/v1/jobs", json={"root": payload}, headers=auth)
            assert answer.status_code in (400, 404, 422), (payload, answer.text)
            assert SECRET not in answer.text
        assert client.get("/api/v1/jobs").json()["count"] == before
    finally:
        (built.root / "link-out").unlink()


def test_url_payloads(client: TestClient) -> None:
    for path in (
        "/api/v1/episodes/..%2f..%2f..%2fetc%2fpasswd/frames/0",
        "/api/v1/episodes/%2e%2e/frames/0",
        "/api/v1/episodes/1/frames/..%2f..%2fetc%2fpasswd",
        "/api/v1/episodes/%252e%252e%252fetc/frames/0",
        "/api/v1/traces/1/arrays/..%2f..%2f..%2fetc%2fpasswd",
        "/api/v1/traces/1/arrays/%2fetc%2fpasswd",
        "/api/v1/../../../etc/passwd",
        "/api/v1/rules/..%2f..%2fetc",
    ):
        answer = client.get(path)
        assert answer.status_code in (400, 404), (path, answer.status_code)
        assert "root:" not in answer.text


def test_dashboard_static_routes_refuse_traversal(built: Built, store_copy: Store) -> None:
    app = build_app(make_settings(built, store_copy), store=store_copy)
    with TestClient(app) as c:
        for path in (
            "/assets/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
            "/assets/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "/_dash-component-suites/dash/..%2f..%2f..%2f..%2fetc%2fpasswd",
            "/_dash-component-suites/dash/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "/_dash-component-suites/dash/..%2f..%2f..",
            "/_dash-component-suites/nothing/x.js",
        ):
            answer = c.get(path)
            assert answer.status_code == 404 and "root:x:0:0" not in answer.text, path


def test_poisoned_rows_and_symlinks_out_of_the_root(
    client: TestClient, store_copy: Store, built: Built, outside: Path
) -> None:
    episode_id = client.get("/api/v1/traces").json()["data"][0]["episode_id"]
    assert client.get(f"/api/v1/episodes/{episode_id}/frames/0").status_code == 200
    # a symlink inside the root that points out of it
    link = built.root / "run" / "replay-link.npz"
    link.symlink_to(outside / "passwd")
    try:
        for target in (str(outside / "passwd"), str(link), f"{built.root}/../../{outside}/passwd"):
            with store_copy.connect(write=True) as conn:
                conn.execute(
                    sa.update(Episode).where(Episode.id == episode_id).values(source_path=target)
                )
            answer = client.get(f"/api/v1/episodes/{episode_id}/frames/1")
            assert answer.status_code == 404 and SECRET not in answer.text, target
    finally:
        link.unlink()
    with store_copy.connect(write=True) as conn:
        conn.execute(sa.update(Checkpoint).values(source_path=str(outside / "passwd")))
    other = client.get("/api/v1/traces").json()["data"][-1]["episode_id"]
    answer = client.get(f"/api/v1/episodes/{other}/frames/2", params={"panels": "recon"})
    assert answer.status_code == 404 and SECRET not in answer.text


def test_an_api_job_reads_nothing_through_a_symlink_out_of_the_roots(
    client: TestClient, built: Built, auth: dict, tmp_path: Path
) -> None:
    """A run folder inside the data root whose second replay folder is a symlink to episodes
    outside every root: the job ingests the inside episodes and refuses the linked ones."""
    escaped = make_world(tmp_path / "elsewhere" / "replay", episodes=2, length=20, seed=9)
    run = built.root / "linked"
    make_world(run / "replay", episodes=1, length=20, seed=5)
    (run / "stolen").symlink_to(escaped, target_is_directory=True)
    ckpt = sorted(built.run_dir.glob("ckpt-*.safetensors"))[-1]
    shutil.copyfile(ckpt, run / ckpt.name)
    try:
        answer = client.post("/api/v1/jobs", json={"root": str(run), "run": "linked"}, headers=auth)
        assert answer.status_code == 202, answer.text
        job = wait_for_job(client, answer.json()["id"])
        assert job["state"] == "done", job
        errors = client.get(f"/api/v1/jobs/{job['id']}/errors").json()["data"]
        assert any("outside the data roots" in e["reason"] for e in errors), errors
        (linked,) = [r for r in client.get("/api/v1/runs").json()["data"] if r["name"] == "linked"]
        episodes = client.get(f"/api/v1/runs/{linked['id']}/episodes").json()["data"]
        assert len(episodes) == 1
        inside = {f.name for f in (run / "replay").glob("*.npz")}
        assert [e["key"].split(":", 1)[1] for e in episodes] == sorted(inside)
    finally:
        shutil.rmtree(run)
