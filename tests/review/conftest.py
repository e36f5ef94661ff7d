"""A real store at the newest schema (SQLite and PostgreSQL, from the root conftest), and a
helper that writes synthetic traces."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from beliefscope.review.service import ReviewService
from beliefscope.store.engine import Store, open_store
from beliefscope.values.traces import METRICS, TraceData


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


@pytest.fixture
def service(store: Store) -> ReviewService:
    return ReviewService(store)


def trace_data(kl: np.ndarray, **columns: np.ndarray) -> TraceData:
    """A trace whose metrics are `kl` (and any given columns); the rest are zeros."""
    kl = np.asarray(kl, dtype=np.float64)
    metrics = {name: np.zeros(len(kl)) for name in METRICS}
    metrics.update(kl=kl, **{k: np.asarray(v, np.float64) for k, v in columns.items()})
    return TraceData(metrics=metrics, kl_groups=kl[:, None])


def add_run(
    store: Store,
    traces: dict[int, list[np.ndarray]],
    *,
    name: str = "run",
    variant: str = "filter",
    config: dict | None = None,
) -> dict[str, list[int]]:
    """Write one checkpoint per key of `traces` (the key is its training step) with one trace
    per array, episode i of the run holding trace i of every checkpoint."""
    w = store.writer
    run = w.ensure_run(name, logdir="/logs")
    ids: dict[str, list[int]] = {"checkpoints": [], "episodes": [], "traces": []}
    for step, arrays in traces.items():
        ckpt = w.ensure_checkpoint(
            run,
            content_hash=f"{name}-{step}",
            format="native",
            source_path="/c",
            step=step,
            config=config or {"groups": 4, "classes": 4},
        )
        ids["checkpoints"].append(ckpt)
        for i, kl in enumerate(arrays):
            ep = w.ensure_episode(
                run, key=f"ep{i}", format="beliefscope", source_path=f"/e/{i}.npz", length=len(kl)
            )
            if ep not in ids["episodes"]:
                ids["episodes"].append(ep)
            trace = w.write_trace(ckpt, ep, variant, "mode", trace_data(kl))
            assert trace is not None
            ids["traces"].append(trace)
    ids["run"] = [run]
    return ids
