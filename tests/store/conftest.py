"""Store test helpers: an open store on each backend with one run, checkpoint and episode."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from beliefscope.store.engine import Store, open_store
from beliefscope.values.traces import METRICS, TraceData


@dataclass(frozen=True)
class Seeded:
    store: Store
    run_id: int
    checkpoint_id: int
    episode_id: int


def make_trace(length: int, seed: int = 0, *, without: tuple[str, ...] = ()) -> TraceData:
    """A trace with random finite metrics (all of METRICS except `without`)."""
    rng = np.random.default_rng(seed)
    metrics = {name: rng.random(length) for name in METRICS if name not in without}
    return TraceData(
        metrics=metrics,
        kl_groups=rng.random((length, 8)),
        post_probs=rng.dirichlet(np.ones(4), size=(length, 2)),
        prior_probs=rng.dirichlet(np.ones(4), size=(length, 2)),
    )


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


@pytest.fixture
def seeded(store: Store) -> Seeded:
    w = store.writer
    run_id = w.ensure_run("run-a", logdir="/logs/a", format="native", family="dreamerv3")
    checkpoint_id = w.ensure_checkpoint(
        run_id, content_hash="c" * 64, format="native", source_path="/logs/a/latest.pt", step=100
    )
    episode_id = w.ensure_episode(
        run_id, key="ep-000", format="native", source_path="/logs/a/ep-000.npz", length=50
    )
    return Seeded(store, run_id, checkpoint_id, episode_id)
