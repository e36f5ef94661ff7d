"""A real store (SQLite, and PostgreSQL where a test asks for it) holding synthetic traces with
known values: NaN, +/-inf and a metric the trace does not have, in two runs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from beliefscope.store.engine import Store, open_store
from beliefscope.values.traces import METRICS, TraceData

ABSENT = "reward_pred"
"""A metric the synthetic traces do not have (a model without a reward head)."""


@dataclass(frozen=True)
class Written:
    """What `seed_store` wrote: trace id -> (run, step, checkpoint id, episode id, key,
    variant, metrics)."""

    traces: dict[int, tuple[str, int, int, int, str, str, dict[str, np.ndarray]]]


def metrics_for(seed: int, length: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    metrics = {name: rng.normal(size=length) for name in METRICS if name != ABSENT}
    metrics["kl"][1] = np.nan
    metrics["correction"][2] = np.inf
    metrics["correction"][3] = -np.inf
    metrics["deter_delta"][0] = np.nan
    return metrics


def seed_store(store: Store, lengths: tuple[int, ...] = (7, 5)) -> Written:
    """Two runs; run "alpha" has checkpoints at steps 100 and 200, run "beta" one at step 100;
    each checkpoint has a `filter` and an `openloop:3` trace of each episode."""
    w = store.writer
    traces = {}
    seed = 0
    for run_name, steps in (("alpha", (100, 200)), ("beta", (100,))):
        run = w.ensure_run(run_name, logdir=f"/logs/{run_name}", format="native", family="native")
        for step in steps:
            ckpt = w.ensure_checkpoint(
                run, content_hash=f"{run_name}-{step}", format="native", source_path="/c", step=step
            )
            for i, length in enumerate(lengths):
                key = f"native:replay/{run_name}-ep{i}.npz"
                ep = w.ensure_episode(
                    run, key=key, format="native", source_path=f"/e/{i}.npz", length=length
                )
                for variant in ("filter", "openloop:3"):
                    seed += 1
                    metrics = metrics_for(seed, length)
                    data = TraceData(metrics=metrics, kl_groups=np.zeros((length, 2)))
                    trace = w.write_trace(ckpt, ep, variant, "mode", data)
                    assert trace is not None
                    traces[trace] = (run_name, step, ckpt, ep, key, variant, metrics)
    return Written(traces)


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    opened = open_store(sqlite_url)
    yield opened
    opened.close()


@pytest.fixture
def seeded(store: Store) -> Written:
    return seed_store(store)


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing goes to the user's ~/.beliefscope (or ~/.config/wandb)."""
    from beliefscope.config import get_settings

    monkeypatch.setenv("BELIEFSCOPE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    get_settings.cache_clear()
