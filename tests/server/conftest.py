"""A real store for the API tests: MuJoCo world episodes, a briefly trained native model,
ingested by the ingest service and flagged by the default rules, built once per session.

Each test gets its own copy of the SQLite file, so tests that write never see each other.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from beliefscope.config import Settings, get_settings
from beliefscope.review.service import ReviewService
from beliefscope.store.engine import Store, open_store, upgrade
from server.app import create_app
from tests.builders import ingest_run, make_run, make_world


@dataclass(frozen=True)
class Built:
    root: Path  # the registered data root: holds the world and the run
    world: Path
    run_dir: Path
    home: Path
    db: Path


def build_store(root: Path, db: Path, home: Path) -> None:
    """World + trained run under `root`, ingested into the SQLite file `db`, rules applied."""
    url = f"sqlite:///{db}"
    upgrade(url)
    ingest_run(url, root / "run", root / "run" / "replay")
    store = open_store(url)
    try:
        ReviewService(store).ensure_default_rules()
        ReviewService(store).apply_rules(who="tests")
    finally:
        store.close()


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    base = tmp_path_factory.mktemp("api")
    root, home, db = base / "data", base / "home", base / "store.db"
    world = make_world(root / "run" / "replay", episodes=3, length=40)
    make_run(root / "run", world, steps=2, save_every=1)
    previous = os.environ.get("BELIEFSCOPE_HOME")
    os.environ["BELIEFSCOPE_HOME"] = str(home)  # checkpoint snapshots go under this home
    get_settings.cache_clear()
    try:
        build_store(root, db, home)
    finally:
        if previous is None:
            os.environ.pop("BELIEFSCOPE_HOME")
        else:
            os.environ["BELIEFSCOPE_HOME"] = previous
        get_settings.cache_clear()
    yield Built(root, world, root / "run", home, db)


@pytest.fixture
def store_copy(built: Built, tmp_path: Path) -> Iterator[Store]:
    db = tmp_path / "store.db"
    with sqlite3.connect(built.db) as src, sqlite3.connect(db) as dst:
        src.backup(dst)  # includes what is still in the source's WAL file
    store = open_store(f"sqlite:///{db}")
    yield store
    store.close()


def make_settings(built: Built, store: Store, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "store": store.url,
        "home": built.home,
        "data_roots": [built.root],
        "host": "127.0.0.1",
        "port": 8050,
        "allowed_hosts": ["testserver"],  # the Host header of Starlette's TestClient
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def app(built: Built, store_copy: Store) -> FastAPI:
    # the tests run webhook passes themselves (`run_once`), so the background pass stays idle
    return create_app(make_settings(built, store_copy), store=store_copy, webhook_interval_s=3600)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def token(store_copy: Store) -> str:
    """A live admin token named "alice"."""
    return store_copy.access.create_token("alice", scope="admin", who="tests")[1]


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_for_job(client: TestClient, job_id: int, timeout: float = 120.0) -> dict:
    """The job once it is done or failed (polled as a client would)."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)
