"""Shared data for the fault suite: a small world and a briefly trained run, built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import make_run, make_world


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_world(tmp_path_factory.mktemp("world") / "replay", episodes=4, length=40)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory, world: Path) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    make_run(out, world, steps=2, save_every=1)
    return out


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshots go under the test's own home, never the user's ~/.beliefscope."""
    from beliefscope.config import get_settings

    monkeypatch.setenv("BELIEFSCOPE_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
