"""The database restarting during an ingest and during API requests: the API answers a clear
503 while it is down and 200 after; the ingest stops with a clear error (or rides it out), a
re-run completes, and nothing is lost."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from beliefscope.store.engine import upgrade
from tests import pgserver
from tests.faults.integrity import assert_complete_once, census
from tests.faults.services import RestartablePg, ingest_cmd, restartable_pg, served

PROBES = ("delay:1", "dropout:5-15")
EXPECTED = 2 * 4 * (1 + len(PROBES))


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Return as soon as `condition()` holds; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout_s:.0f} s for {what}"
        time.sleep(0.05)


@pytest.fixture
def pg() -> Iterator[RestartablePg]:
    with restartable_pg() as server:
        yield server


@pytest.mark.slow
def test_database_restart_during_ingest_and_api_requests(
    pg: RestartablePg, world: Path, run_dir: Path, tmp_path: Path
) -> None:
    with pgserver.fresh_database(pg.url) as url:
        upgrade(url)
        env = {**os.environ, "BELIEFSCOPE_HOME": str(tmp_path / "home"), "BELIEFSCOPE_STORE": url}
        answers: list[tuple[float, int, str]] = []
        stop = threading.Event()
        with served(url, tmp_path / "home") as server:

            def poll() -> None:
                with httpx.Client(base_url=server.base, timeout=30) as client:
                    while not stop.is_set():
                        for path in ("/healthz", "/api/v1/runs"):
                            r = client.get(path)
                            answers.append((time.monotonic(), r.status_code, r.text))
                        stop.wait(0.05)

            poller = threading.Thread(target=poll)
            poller.start()
            ingest = subprocess.Popen(
                ingest_cmd(run_dir, world, *PROBES),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            wait_until(lambda: bool(census(url).keys), 180, "a first trace before the restart")
            down_at = time.monotonic()
            pg.stop()
            wait_until(
                lambda: any(t >= down_at and code == 503 for t, code, _ in answers),
                60,
                "a request to meet the database down",
            )
            pg.start()
            up_at = time.monotonic()
            out, err = ingest.communicate(timeout=300)
            wait_until(
                lambda: sum(t > up_at + 1 for t, _, _ in answers) >= 5,
                60,
                "five answers after the restart",
            )
            stop.set()
            poller.join()

        # the API: 200 before, a clear 503 while down, 200 again after; nothing else
        assert {code for _, code, _ in answers} <= {200, 503}, {c for _, c, _ in answers}
        down = [(t, text) for t, code, text in answers if code == 503]
        assert down, "no request met the database down"
        assert all(down_at <= t for t, _ in down)
        assert all("unavailable" in text for _, text in down), down[0]
        assert [code for t, code, _ in answers if t > up_at + 1][-5:] == [200] * 5
        # the ingest: finished, or stopped with one clear line; a re-run completes
        if ingest.returncode != 0:
            assert ingest.returncode == 2 and "unavailable" in err.splitlines()[-1], err[-2000:]
        rerun = subprocess.run(
            ingest_cmd(run_dir, world, *PROBES),
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert_complete_once(url, EXPECTED)
        print(
            f"\nrestart: {len(down)} answers 503 while down, {len(answers)} requests, ingest "
            f"exit {ingest.returncode}: {(err.strip().splitlines() or [''])[-1][:200]}"
        )
