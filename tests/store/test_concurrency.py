"""SQLite in WAL mode: the dashboard reads while an ingest commits, and nobody sees a lock."""

from __future__ import annotations

import threading

import numpy as np

from beliefscope.store.engine import open_store
from tests.store.conftest import make_trace


def test_readers_never_block_on_a_writing_ingest(sqlite_url: str) -> None:
    writer_store, reader_store = open_store(sqlite_url), open_store(sqlite_url)
    w = writer_store.writer
    run_id = w.ensure_run("live", logdir="/logs/live")
    checkpoint_id = w.ensure_checkpoint(
        run_id, content_hash="a" * 64, format="native", source_path="/logs/live/latest.pt"
    )
    episodes = [
        w.ensure_episode(run_id, key=f"ep-{i}", format="native", source_path=f"/e{i}", length=2000)
        for i in range(12)
    ]
    done = threading.Event()
    errors: list[BaseException] = []
    reads = 0

    def read() -> None:
        nonlocal reads
        q = reader_store.queries
        try:
            while not done.is_set():
                for trace in q.list_traces(checkpoint_id=checkpoint_id, limit=1000).items:
                    got = q.read_trace(trace_id=trace.id, max_points=200)
                    assert got.series["kl"].t[-1] == trace.length - 1  # never a partial trace
                    reads += 1
                q.list_runs()
        except BaseException as err:
            errors.append(err)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        for i, episode_id in enumerate(episodes):
            job = w.create_job("ingest", run_id=run_id, total=1)
            w.write_trace(checkpoint_id, episode_id, "filter", "mode", make_trace(2000, i))
            w.update_job(job, add_done=1)
    finally:
        done.set()
        for thread in readers:
            thread.join(timeout=60)
        writer_store.close()
        reader_store.close()
    assert not errors, errors
    assert reads > 0
    final = open_store(sqlite_url)
    try:
        assert final.queries.list_traces(checkpoint_id=checkpoint_id).total == len(episodes)
        assert np.isfinite(final.queries.checkpoint_summary(checkpoint_id=checkpoint_id).kl.p95)
    finally:
        final.close()
