"""A sustained API load during ingest: 32 clients for 60 s against `beliefscope serve` on a
real PostgreSQL store while ingests keep writing; every request must succeed."""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.builders import ingest_run
from tests.faults.services import ingest_cmd, served

CLIENTS = 32
SECONDS = 60.0


def _client(base: str, until: float, seed: int, out: list[tuple[str, int, float]]) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=base, timeout=60) as client:
        while time.monotonic() < until:
            began = time.monotonic()
            try:
                runs = client.get("/api/v1/runs")
                path, code = "/api/v1/runs", runs.status_code
                if code == 200 and runs.json()["data"]:
                    run = rng.choice(runs.json()["data"])
                    path = f"/api/v1/runs/{run['id']}/episodes"
                    episodes = client.get(path)
                    code = episodes.status_code
                    if code == 200 and episodes.json()["data"]:
                        episode = rng.choice(episodes.json()["data"])
                        path = f"/api/v1/episodes/{episode['id']}/traces"
                        traces = client.get(path)
                        code = traces.status_code
                        if code == 200 and traces.json()["data"]:
                            trace = rng.choice(traces.json()["data"])
                            path = f"/api/v1/traces/{trace['id']}/series"
                            code = client.get(path, params={"metrics": "kl,correction"}).status_code
            except httpx.HTTPError as err:
                path, code = f"{path}: {type(err).__name__}", 0
            out.append((path, code, time.monotonic() - began))


@pytest.mark.slow
def test_32_clients_for_60_s_during_ingest_see_no_errors(
    pg_url: str, world: Path, run_dir: Path, tmp_path: Path
) -> None:
    ingest_run(pg_url, run_dir, world)  # something to read from the start
    env = {**os.environ, "BELIEFSCOPE_HOME": str(tmp_path / "home"), "BELIEFSCOPE_STORE": pg_url}
    results: list[tuple[str, int, float]] = []
    ingests: list[int] = []
    with served(pg_url, tmp_path / "home") as server:
        until = time.monotonic() + SECONDS
        clients = [
            threading.Thread(target=_client, args=(server.base, until, i, results))
            for i in range(CLIENTS)
        ]
        for thread in clients:
            thread.start()
        k = 0
        while time.monotonic() < until - 5:  # new variants keep the ingest writing all along
            k += 1
            variants = (f"delay:{k}", f"dropout:{k}-{k + 10}")
            done = subprocess.run(
                ingest_cmd(run_dir, world, *variants),
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stderr[-2000:]
            ingests.append(k)
        for thread in clients:
            thread.join()
    failures = [(path, code) for path, code, _ in results if code != 200]
    latencies = sorted(seconds for *_, seconds in results)
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    print(
        f"\napi load: {CLIENTS} clients x {SECONDS:.0f} s during {len(ingests)} ingests: "
        f"{len(results)} request chains, {len(failures)} errors, p50 {p50 * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms"
    )
    assert ingests, "no ingest ran during the load"
    assert len(results) > CLIENTS
    assert failures == [], failures[:10]
