from __future__ import annotations

import threading

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa

from beliefscope.errors import BadInputError, NotFoundError, StoreUnavailableError
from beliefscope.store import writer
from beliefscope.store.engine import Store, open_store
from beliefscope.store.tables import Trace, TraceArray, steps
from tests.store.conftest import Seeded, make_trace


def _count(seeded: Seeded, table: sa.FromClause) -> int:
    with seeded.store.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_upserts_are_idempotent(seeded: Seeded) -> None:
    w = seeded.store.writer
    assert w.ensure_run("run-a", logdir="/elsewhere") == seeded.run_id
    assert w.ensure_run("run-b", logdir="/logs/b") != seeded.run_id
    same = w.ensure_checkpoint(
        seeded.run_id, content_hash="c" * 64, format="native", source_path="/moved.pt", step=100
    )
    assert same == seeded.checkpoint_id
    other = w.ensure_checkpoint(
        seeded.run_id, content_hash="d" * 64, format="native", source_path="/logs/a/latest.pt"
    )
    assert other != seeded.checkpoint_id  # `latest` overwritten: a new version, kept apart
    again = w.ensure_episode(
        seeded.run_id, key="ep-000", format="native", source_path="/x.npz", length=50
    )
    assert again == seeded.episode_id
    info = seeded.store.queries.get_checkpoint(checkpoint_id=seeded.checkpoint_id)
    assert info.source_path == "/logs/a/latest.pt"  # the first write wins


def test_duplicate_unit_is_skipped(seeded: Seeded) -> None:
    w = seeded.store.writer
    args = (seeded.checkpoint_id, seeded.episode_id, "filter", "mode")
    assert not w.trace_done(*args[:3])
    trace_id = w.write_trace(*args, make_trace(40))
    assert trace_id is not None
    assert w.trace_done(*args[:3])
    assert w.write_trace(*args, make_trace(40, seed=1)) is None
    assert _count(seeded, Trace.__table__) == 1
    assert _count(seeded, steps) == 40
    # a sampled posterior is another unit, not a duplicate
    assert w.write_trace(*args[:3], "sample:7", make_trace(40)) is not None
    assert w.done_episodes(seeded.checkpoint_id, variant="filter") == {seeded.episode_id}


def test_write_trace_is_all_or_nothing(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail_after_steps(*args: object) -> None:
        raise RuntimeError("disk full while writing arrays")

    monkeypatch.setattr(writer, "_write_arrays", fail_after_steps)
    with pytest.raises(RuntimeError, match="disk full"):
        seeded.store.writer.write_trace(
            seeded.checkpoint_id, seeded.episode_id, "filter", "mode", make_trace(30)
        )
    assert _count(seeded, Trace.__table__) == 0
    assert _count(seeded, steps) == 0
    assert _count(seeded, TraceArray.__table__) == 0
    monkeypatch.undo()
    assert seeded.store.writer.write_trace(
        seeded.checkpoint_id, seeded.episode_id, "filter", "mode", make_trace(30)
    )


def test_concurrent_writers_of_one_unit_leave_exactly_one_trace(
    seeded: Seeded, store_url: str
) -> None:
    stores = [open_store(store_url) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    results: list[int | None] = []
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            barrier.wait()
            results.append(
                stores[i].writer.write_trace(
                    seeded.checkpoint_id, seeded.episode_id, "filter", "mode", make_trace(2000, i)
                )
            )
        except BaseException as err:  # reported below, in the test's thread
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for s in stores:
        s.close()
    assert not errors, errors
    assert sum(r is not None for r in results) == 1, results
    assert _count(seeded, Trace.__table__) == 1
    assert _count(seeded, steps) == 2000


def test_job_lifecycle(seeded: Seeded) -> None:
    w, q = seeded.store.writer, seeded.store.queries
    job_id = w.create_job("ingest", run_id=seeded.run_id, args={"variants": ["filter"]}, total=3)
    assert q.get_job(job_id=job_id).state == "queued"
    w.start_job(job_id)
    w.update_job(job_id, add_done=1)
    w.update_job(job_id, add_done=1)
    w.record_job_error(
        job_id, unit="ckpt 1 x ep-002", file="/logs/a/ep-002.npz", reason="truncated"
    )
    w.finish_job(job_id, message="2 of 3 units, 1 error")
    job = q.get_job(job_id=job_id)
    assert (job.state, job.done, job.total, job.n_errors) == ("done", 2, 3, 1)
    assert job.started is not None and job.finished is not None and job.heartbeat is not None
    assert job.errors[0].file == "/logs/a/ep-002.npz" and job.errors[0].reason == "truncated"
    assert q.get_run(run_id=seeded.run_id).latest_job_state == "done"
    failed = w.create_job("ingest", run_id=seeded.run_id)
    w.finish_job(failed, failed=True, message="checkpoint unreadable")
    assert q.get_run(run_id=seeded.run_id).latest_job_state == "failed"
    assert [j.id for j in q.list_jobs(run_id=seeded.run_id).items] == [failed, job_id]
    assert q.list_jobs(state="failed").total == 1


def test_arrays_keep_shape_and_dtype(seeded: Seeded) -> None:
    data = make_trace(12)
    data.extra["object_xy"] = np.arange(24, dtype=np.float32).reshape(12, 2)
    trace_id = seeded.store.writer.write_trace(
        seeded.checkpoint_id, seeded.episode_id, "decode", "mode", data
    )
    assert trace_id is not None
    q = seeded.store.queries
    assert q.get_trace(trace_id=trace_id).arrays == (
        "extra:object_xy",
        "kl_groups",
        "post_probs",
        "prior_probs",
    )
    extra = q.read_array(trace_id=trace_id, name="extra:object_xy")
    assert extra.values.dtype == np.float32
    np.testing.assert_array_equal(extra.values, data.extra["object_xy"])
    probs = q.read_array(trace_id=trace_id, name="post_probs")
    assert probs.values.dtype == np.float16 and probs.values.shape == (12, 2, 4)
    np.testing.assert_allclose(probs.values, data.post_probs, atol=1e-3)  # type: ignore[arg-type]


def test_deleting_a_run_removes_everything_of_it_and_nothing_else(seeded: Seeded) -> None:
    """On both backends: steps (no foreign key), arrays, flags with history, metric columns,
    probe summaries and jobs go with the run; another run keeps all of its own."""
    from beliefscope.review.service import ReviewService
    from beliefscope.store.review_tables import Flag, FlagHistory, MetricColumn, ProbeSummary
    from beliefscope.store.tables import Job, JobError, Run

    w, store = seeded.store.writer, seeded.store
    trace = w.write_trace(seeded.checkpoint_id, seeded.episode_id, "filter", "mode", make_trace(30))
    assert trace is not None
    other = w.ensure_run("run-b", logdir="/logs/b")
    other_ckpt = w.ensure_checkpoint(other, content_hash="d" * 64, format="n", source_path="/b")
    other_ep = w.ensure_episode(other, key="ep-b", format="n", source_path="/b.npz", length=20)
    w.write_trace(other_ckpt, other_ep, "filter", "mode", make_trace(20, seed=1))
    service = ReviewService(store)
    service.ensure_default_rules()
    service.apply_rules(who="tests")
    flag = store.reviews.create_manual_flag(trace_id=trace, t0=2, t1=5, who="tests")
    store.reviews.review_flag(flag_id=flag.id, who="tests", state="confirmed")
    store.reviews.save_probe_summary(checkpoint_id=seeded.checkpoint_id, probe="decode", data={})
    job = w.create_job("ingest", run_id=seeded.run_id)
    w.record_job_error(job, unit="u", reason="r")
    w.finish_job(job, failed=True, message="r")
    kept = {t: _count(seeded, t.__table__) for t in (Flag, MetricColumn)}

    gone = w.delete_run(seeded.run_id, who="alice")
    assert (gone.name, gone.checkpoints, gone.episodes, gone.traces) == ("run-a", 1, 1, 1)
    (logged,) = store.activity.list_activity(action="run.delete").items
    assert (logged.who, logged.target, logged.details["traces"]) == ("alice", "run:run-a", 1)
    assert _count(seeded, Run.__table__) == 1 and _count(seeded, steps) == 20
    assert _count(seeded, Trace.__table__) == 1 and _count(seeded, TraceArray.__table__) >= 1
    for table in (FlagHistory, ProbeSummary, Job, JobError):
        assert _count(seeded, table.__table__) == 0, table
    assert _count(seeded, Flag.__table__) < kept[Flag]
    assert _count(seeded, MetricColumn.__table__) < kept[MetricColumn]
    with pytest.raises(NotFoundError, match=f"no run with id {seeded.run_id}"):
        w.delete_run(seeded.run_id, who="alice")


def test_driver_errors_that_mean_unavailable_surface_as_such(store: Store) -> None:
    """The writer's rows go through the driver itself, outside SQLAlchemy's error wrapping: a
    refused write (SQLite) or a connection the server dropped mid-unit (PostgreSQL) must still
    read as an unavailable store (what the watcher and the API retry on), not as a bug."""
    with (
        pytest.raises(StoreUnavailableError, match="is unavailable"),
        store.connect(write=True) as conn,
    ):
        dbapi = conn.connection.driver_connection
        if isinstance(dbapi, psycopg.Connection):
            libpq = store.engine.url.set(drivername="postgresql").render_as_string(
                hide_password=False
            )
            with psycopg.connect(libpq, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (dbapi.info.backend_pid,))
        else:
            dbapi.execute("PRAGMA query_only = 1")  # "attempt to write a readonly database"
        dbapi.execute("DELETE FROM runs")


def test_a_batch_commits_unit_by_unit(seeded: Seeded) -> None:
    """`write_traces` (an ingest batch) skips stored units and commits each on its own: a unit
    that fails leaves the ones before it stored and nothing of itself."""
    w = seeded.store.writer
    episodes = [
        w.ensure_episode(seeded.run_id, key=f"ep-{i}", format="native", source_path="/e", length=20)
        for i in range(1, 4)
    ]
    first = w.write_trace(seeded.checkpoint_id, episodes[0], "filter", "mode", make_trace(20))
    got = w.write_traces(
        seeded.checkpoint_id, "filter", "mode", [(e, make_trace(20, seed=e)) for e in episodes]
    )
    assert got[0] is None and first is not None and None not in got[1:]
    assert _count(seeded, steps) == 3 * 20
    broken = make_trace(20)
    broken.extra["labels"] = np.array(["a"] * 20)
    more = [
        w.ensure_episode(seeded.run_id, key=f"ep-{i}", format="native", source_path="/e", length=20)
        for i in range(4, 7)
    ]
    batch = [(more[0], make_trace(20)), (more[1], broken), (more[2], make_trace(20))]
    with pytest.raises(BadInputError, match="numbers only"):
        w.write_traces(seeded.checkpoint_id, "filter", "mode", batch)
    assert w.done_episodes(seeded.checkpoint_id, variant="filter") == {*episodes, more[0]}
    assert _count(seeded, steps) == 4 * 20
