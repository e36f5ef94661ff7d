"""Fixtures for every test: stores on SQLite and on a real PostgreSQL, one thread for torch.

PostgreSQL comes from `BELIEFSCOPE_TEST_PG` (default: the local server on 5432); if nothing
answers there a throwaway server is started for the session. If neither works the tests that
need it fail with the reason: they are never skipped.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from beliefscope.config import get_settings
from tests import pgserver

DEFAULT_TEST_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pytest_configure(config: pytest.Config) -> None:
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of a PostgreSQL database this session may create databases from."""
    url = get_settings().test_pg or DEFAULT_TEST_PG
    why = pgserver.answers(url)
    if why is None:
        yield url
        return
    try:
        with pgserver.throwaway_server() as throwaway:
            yield throwaway
    except pgserver.PgUnavailable as err:
        pytest.fail(f"no PostgreSQL for the tests: {url} does not answer ({why}); {err}")


@pytest.fixture
def pg_empty_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with pgserver.fresh_database(pg_server) as url:
        yield url


@pytest.fixture
def pg_url(pg_empty_url: str) -> str:
    """A fresh PostgreSQL store at the newest schema."""
    from beliefscope.store.engine import upgrade

    upgrade(pg_empty_url)
    return pg_empty_url


@pytest.fixture
def sqlite_empty_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def sqlite_url(sqlite_empty_url: str) -> str:
    """A fresh SQLite store (a file in tmp_path) at the newest schema."""
    from beliefscope.store.engine import upgrade

    upgrade(sqlite_empty_url)
    return sqlite_empty_url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """A fresh, upgraded store on each backend in turn."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_store_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database (no schema) on each backend in turn."""
    name = "sqlite_empty_url" if request.param == "sqlite" else "pg_empty_url"
    return request.getfixturevalue(name)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
"""Debian's headless Chromium, as every browser test drives it."""


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One Chromium per test session (a second sync Playwright in one process refuses to
    start), shared by every directory's browser tests."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver"
    )
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
