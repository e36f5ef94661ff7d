from __future__ import annotations

import pytest

from beliefscope.errors import BadInputError, NotFoundError
from tests.store.conftest import Seeded, make_trace


def test_episodes_paginate_filter_and_sort(seeded: Seeded) -> None:
    w, q = seeded.store.writer, seeded.store.queries
    for i in range(1, 25):
        w.ensure_episode(
            seeded.run_id,
            key=f"ep-{i:03d}",
            format="native",
            source_path=f"/logs/a/ep-{i:03d}.npz",
            length=10 * i,
            episode_return=float(i % 5),
            has_truth=i % 2 == 0,
            truth_summary={"occlusions": i % 3},
        )
    first = q.list_episodes(run_id=seeded.run_id, limit=10)
    second = q.list_episodes(run_id=seeded.run_id, limit=10, offset=10)
    last = q.list_episodes(run_id=seeded.run_id, limit=10, offset=20)
    assert first.total == second.total == last.total == 25
    keys = [e.key for page in (first, second, last) for e in page.items]
    assert keys == sorted(keys) and len(set(keys)) == 25
    truth = q.list_episodes(run_id=seeded.run_id, has_truth=True, limit=100)
    assert truth.total == 12 and all(e.has_truth for e in truth.items)
    assert truth.items[0].truth_summary == {"occlusions": 2}
    long = q.list_episodes(
        run_id=seeded.run_id, min_length=200, order_by="length", descending=True, limit=3
    )
    assert long.total == 5 and [e.length for e in long.items] == [240, 230, 220]
    assert q.list_episodes(run_id=seeded.run_id, key_contains="ep-01").total == 10
    assert q.list_episodes(run_id=seeded.run_id, key_contains="%").total == 0  # escaped
    with pytest.raises(BadInputError, match="limit"):
        q.list_episodes(run_id=seeded.run_id, limit=0)
    with pytest.raises(BadInputError, match="order"):
        q.list_episodes(run_id=seeded.run_id, order_by="color")  # type: ignore[arg-type]


def test_runs_checkpoints_and_traces(seeded: Seeded) -> None:
    w, q = seeded.store.writer, seeded.store.queries
    late = w.ensure_checkpoint(
        seeded.run_id, content_hash="e" * 64, format="native", source_path="/x", step=900
    )
    unknown = w.ensure_checkpoint(
        seeded.run_id, content_hash="f" * 64, format="native", source_path="/y"
    )
    w.ensure_run("run-0", logdir="/logs/0")
    for variant in ("filter", "openloop:5", "dropout:10-30"):
        w.write_trace(seeded.checkpoint_id, seeded.episode_id, variant, "mode", make_trace(20))
    w.write_trace(late, seeded.episode_id, "filter", "mode", make_trace(20))
    runs = q.list_runs()
    assert [r.name for r in runs.items] == ["run-0", "run-a"]
    run = runs.items[1]
    assert (run.n_checkpoints, run.n_episodes, run.n_traces, run.latest_job_state) == (
        3,
        1,
        4,
        None,
    )
    assert q.find_run(name="run-a") == q.get_run(run_id=seeded.run_id)
    checkpoints = q.list_checkpoints(run_id=seeded.run_id).items
    assert [c.id for c in checkpoints] == [seeded.checkpoint_id, late, unknown]
    assert [c.n_traces for c in checkpoints] == [3, 1, 0]
    traces = q.list_traces(checkpoint_id=seeded.checkpoint_id, episode_id=seeded.episode_id)
    assert sorted(t.variant for t in traces.items) == ["dropout:10-30", "filter", "openloop:5"]
    page = q.list_traces(checkpoint_id=seeded.checkpoint_id, limit=2, offset=2)
    assert page.total == 3 and len(page.items) == 1
    found = q.find_trace(checkpoint_id=late, episode_id=seeded.episode_id)
    assert found.length == 20 and found.arrays == ("kl_groups", "post_probs", "prior_probs")
    summaries = q.checkpoint_summaries(run_id=seeded.run_id)
    assert [(s.checkpoint_id, s.n_traces) for s in summaries] == [
        (seeded.checkpoint_id, 1),
        (late, 1),
        (unknown, 0),
    ]
    assert summaries[0].kl.n_finite == 20 and summaries[2].kl.mean is None


def test_missing_ids_are_404(seeded: Seeded) -> None:
    q = seeded.store.queries
    calls = [
        lambda: q.get_run(run_id=999),
        lambda: q.find_run(name="nope"),
        lambda: q.get_checkpoint(checkpoint_id=999),
        lambda: q.get_episode(episode_id=999),
        lambda: q.get_trace(trace_id=999),
        lambda: q.read_trace(trace_id=999),
        lambda: q.read_array(trace_id=999, name="kl_groups"),
        lambda: q.get_job(job_id=999),
        lambda: q.find_trace(checkpoint_id=seeded.checkpoint_id, episode_id=seeded.episode_id),
    ]
    for call in calls:
        with pytest.raises(NotFoundError) as err:
            call()
        assert err.value.status == 404
    with pytest.raises(BadInputError, match="unknown metrics"):
        q.read_trace(trace_id=1, metrics=["klx"])
