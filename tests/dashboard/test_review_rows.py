"""The review page's rows come from one joined read of the flags, however many runs,
checkpoints and episodes they sit on (no read per flag target), plus one read of each run's
episodes for their ground truth."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dash
import numpy as np
import pytest
import sqlalchemy as sa

from beliefscope.access import Authorizer
from beliefscope.config import Settings
from beliefscope.review.service import ReviewService
from beliefscope.store.engine import Store, open_store
from dashboard.app import create_dash
from tests.review.conftest import add_run


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    opened = open_store(sqlite_url)
    yield opened
    opened.close()


def spiky(length: int, at: int) -> np.ndarray:
    kl = np.ones(length)
    kl[at : at + 3] = 9.0
    return kl


def test_rows_of_many_targets_take_one_read(store: Store, tmp_path: Path) -> None:
    for name in ("run-a", "run-b"):
        add_run(
            store, {step: [spiky(30, 5 + i) for i in range(4)] for step in (100, 200)}, name=name
        )
    reviews = ReviewService(store)
    reviews.set_rule(
        name="k", changes={"metric": "kl", "mode": "absolute", "threshold": 5}, who="a"
    )
    reviews.apply_rule(name="k", who="a")
    flags = store.reviews.list_flags(limit=100).items
    assert len({(f.checkpoint_id, f.episode_id) for f in flags}) == 16
    settings = Settings(store=store.url, home=tmp_path)
    create_dash(store, settings, access=Authorizer(store, settings))
    # the page module as Dash loaded it (importing it by its package name registers it twice)
    page = next(p for p in dash.page_registry.values() if p["path"] == "/review")
    review = sys.modules[page["module"]]

    selects: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        rows = review._rows(None, None, None, None, None)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count)
    assert len(selects) <= 2 + 2 * 2, selects  # the flags page and its count; per run, its episodes
    q = store.queries
    expected = {}
    for f in flags:
        ckpt = q.get_checkpoint(checkpoint_id=f.checkpoint_id)
        episode = q.get_episode(episode_id=f.episode_id)
        expected[str(f.id)] = (q.get_run(run_id=ckpt.run_id).name, ckpt.step, episode.key)
    assert {r["id"]: (r["run"], r["ckpt"], r["episode"]) for r in rows} == expected
