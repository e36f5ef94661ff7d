"""A real store served by the real app, and a real headless Chromium, for the browser tests.

The store is built the way a user builds one: MuJoCo world episodes, a tiny native model
trained for a few updates (two checkpoints), `beliefscope ingest` with a dropout variant, the
belief probe (`beliefscope probe decode`), the default rules applied, one manual flag, and an
API token for a reviewer.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REVIEWER = "alice"


@dataclass(frozen=True)
class UiData:
    url: str  # store URL
    root: Path
    run_id: int
    checkpoints: tuple[int, int]  # (older, newer)
    episode_id: int
    flag_id: int
    token: str


def _cli(*args: str | Path, env: dict[str, str]) -> None:
    cmd = [sys.executable, "-m", "beliefscope.cli", *map(str, args)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"


def build_store(
    root: Path,
    *,
    episodes: dict[int, int] | None = None,
    variants: tuple[str, ...] = ("dropout:occluded",),
    decode: bool = True,
) -> UiData:
    """World -> train -> ingest (-> belief probe) -> rules, all through the real commands.
    `episodes` maps an episode length to how many episodes of that length (default: four of
    100 steps)."""
    from beliefscope.review.service import ReviewService
    from beliefscope.store.engine import open_store

    env = {
        **os.environ,
        "BELIEFSCOPE_HOME": str(root / "home"),
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
    }
    run, url = root / "run", f"sqlite:///{root / 'store.db'}"
    worlds = []
    for length, count in (episodes or {100: 4}).items():
        worlds.append(root / f"world-{length}")
        _cli(
            "world",
            "generate",
            "--out",
            worlds[-1],
            "--episodes",
            count,
            "--length",
            length,
            env=env,
        )
    world = worlds[0]
    _cli(
        "train",
        "--replay",
        world,
        "--out",
        run,
        "--steps",
        20,
        "--save-every",
        10,
        "--preset",
        "tiny",
        "--batch",
        4,
        "--length",
        32,
        "--threads",
        1,
        "--quiet",
        env=env,
    )
    _cli("db", "upgrade", "--store", url, env=env)
    replays = [arg for w in worlds for arg in ("--replay", w)]
    variant_args = [arg for variant in variants for arg in ("--variant", variant)]
    _cli("ingest", run, *replays, "--store", url, *variant_args, "--threads", 1, env=env)
    if decode:
        _cli(
            "probe",
            "decode",
            run,
            *replays,
            "--store",
            url,
            "--threads",
            1,
            "--samples",
            4,
            env=env,
        )
    store = open_store(url)
    try:
        q = store.queries
        run_info = q.list_runs().items[0]
        ckpts = q.list_checkpoints(run_id=run_info.id).items
        assert len(ckpts) >= 2, f"expected two checkpoints, got {len(ckpts)}"
        episode = q.list_episodes(run_id=run_info.id).items[0]
        ReviewService(store).ensure_default_rules()
        ReviewService(store).apply_rules(who="tests")
        trace = q.find_trace(checkpoint_id=ckpts[-1].id, episode_id=episode.id)
        flag = store.reviews.create_manual_flag(
            trace_id=trace.id, t0=30, t1=36, who="tests", notes="slip at the shelf?"
        )
        _, token = store.access.create_token(REVIEWER, scope="review", who="tests")
        return UiData(
            url, root, run_info.id, (ckpts[0].id, ckpts[-1].id), episode.id, flag.id, token
        )
    finally:
        store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(data: UiData) -> Iterator[str]:
    """The real app (`beliefscope.cli.serve.build_app`: API, frames, dashboard) on a free local
    port."""
    import uvicorn

    from beliefscope.cli.serve import build_app
    from beliefscope.config import Settings

    port = free_port()
    settings = Settings(
        store=data.url,
        home=data.root / "home",
        data_roots=[data.root],
        host="127.0.0.1",
        port=port,
    )
    server = uvicorn.Server(
        uvicorn.Config(build_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the server did not answer /healthz within 30 s"
        time.sleep(0.1)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def ui_data(tmp_path_factory: pytest.TempPathFactory) -> UiData:
    return build_store(tmp_path_factory.mktemp("ui"))


@pytest.fixture(scope="session")
def base_url(ui_data: UiData) -> Iterator[str]:
    with serve(ui_data) as base:
        yield base


@pytest.fixture
def page(browser, base_url: str) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A fresh browser context (no cookies) whose console must stay free of errors."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1440, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.console_errors = errors
    yield pg
    context.close()
    assert not errors, f"console errors: {errors}"
