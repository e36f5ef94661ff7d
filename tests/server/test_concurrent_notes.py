"""Notes added to one flag at once through the API, on SQLite and PostgreSQL: every line lands."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from beliefscope.config import Settings
from beliefscope.store.engine import Store, open_store
from server.app import create_app
from tests.review.conftest import add_run

WRITERS = 8


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def test_concurrent_notes_all_land(store: Store, tmp_path: Path) -> None:
    ids = add_run(store, {1: [np.ones(20)]})
    flag = store.reviews.create_manual_flag(trace_id=ids["traces"][0], t0=2, t1=5, who="ann")
    secret = store.access.create_token("alice", scope="review", who="tests")[1]
    settings = Settings(store=store.url, home=tmp_path, host="127.0.0.1")
    barrier = threading.Barrier(WRITERS)
    answers: list[int] = []
    with TestClient(create_app(settings, store=store), base_url="http://127.0.0.1") as client:

        def note(i: int) -> None:
            barrier.wait()
            answer = client.post(
                f"/api/v1/flags/{flag.id}/notes",
                json={"text": f"note {i}"},
                headers={"Authorization": f"Bearer {secret}"},
            )
            answers.append(answer.status_code)

        threads = [threading.Thread(target=note, args=(i,)) for i in range(WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert answers == [200] * WRITERS
    notes = store.reviews.get_flag(flag_id=flag.id).notes.splitlines()
    assert sorted(notes) == sorted(f"alice: note {i}" for i in range(WRITERS))
    history = [h for h in store.reviews.flag_history(flag_id=flag.id) if h.action == "review"]
    assert len(history) == WRITERS
    for prev, cur in zip(history, history[1:], strict=False):
        assert cur.changes["notes"][0] == prev.changes["notes"][1]  # each built on the last
