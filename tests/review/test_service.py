"""Rules, flags and reviews through the review service and a real store (SQLite, PostgreSQL)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from beliefscope.errors import BadInputError, NotFoundError
from beliefscope.review.rules import DEFAULT_RULES
from tests.review.conftest import add_run


def spiky(length: int, spikes: list[tuple[int, int, float]], base: float = 1.0) -> np.ndarray:
    x = np.full(length, base)
    for t0, t1, value in spikes:
        x[t0 : t1 + 1] = value
    return x


RULE = {"metric": "kl", "mode": "absolute", "threshold": 5, "min_duration": 2}


def spans(store, **kw):
    return [
        (f.trace_id, f.t0, f.t1, f.state, f.stale) for f in store.reviews.list_flags(**kw).items
    ]


def test_rules_are_versioned_and_bad_edits_save_nothing(store, service):
    v1 = service.set_rule(name="k", changes=RULE, who="ann")
    assert v1.rule.version == 1 and v1.created_by == "ann"
    same = service.set_rule(name="k", changes={"threshold": "5"}, who="bob")
    assert same.id == v1.id  # nothing changed: no new version
    v2 = service.set_rule(name="k", changes={"threshold": "6"}, who="bob")
    assert (v2.rule.version, v2.rule.threshold, v2.rule.min_duration) == (2, 6.0, 2)
    for bad in ({"metric": "nope"}, {"min_duration": "-1"}, {"threshold": "high"}):
        with pytest.raises(BadInputError):
            service.set_rule(name="k", changes=bad, who="eve")
    with pytest.raises(BadInputError):
        service.set_rule(name="new", changes={"metric": "kl", "threshold": "x"}, who="eve")
    assert [i.rule.version for i in store.reviews.list_rules(all_versions=True)] == [1, 2]
    assert store.reviews.get_rule(name="k", version=1).rule.threshold == 5.0
    with pytest.raises(NotFoundError):
        store.reviews.get_rule(name="new")
    names = [i.rule.name for i in service.ensure_default_rules()]
    assert names == sorted(["k", *(r.name for r in DEFAULT_RULES)])


def test_apply_rule_flags_from_stored_steps(store, service):
    ids = add_run(
        store, {100: [spiky(50, [(10, 12, 9.0)]), spiky(50, [(30, 30, 9.0), (40, 43, 7.0)])]}
    )
    service.set_rule(name="k", changes=RULE, who="ann")
    result = service.apply_rule(name="k", who="ann")
    assert (result.traces, result.steps, result.created, result.deleted) == (2, 100, 2, 0)
    t0, t1 = ids["traces"]
    assert spans(store) == [(t0, 10, 12, "open", False), (t1, 40, 43, "open", False)]
    flag = store.reviews.list_flags(trace_id=t1).items[0]
    assert (flag.peak, flag.peak_t, flag.rule_version, flag.episode_id) == (
        7.0,
        40,
        1,
        ids["episodes"][1],
    )
    # applying again changes nothing: the same flags (ids, spans, peaks), no history
    before = store.reviews.list_flags().items
    again = service.apply_rule(name="k", who="ann")
    assert (again.created, again.updated, again.deleted) == (0, 2, 0)
    after = store.reviews.list_flags().items
    assert [(f.id, f.t0, f.t1, f.peak) for f in after] == [
        (f.id, f.t0, f.t1, f.peak) for f in before
    ]
    assert all(store.reviews.flag_history(flag_id=f.id) == () for f in after)


def test_reflagging_keeps_human_reviews(store, service):
    ids = add_run(
        store,
        {100: [spiky(60, [(10, 12, 9.0), (30, 31, 6.0), (50, 52, 6.0)])]},
    )
    trace = ids["traces"][0]
    service.set_rule(name="k", changes=RULE, who="ann")
    service.apply_rule(name="k", who="ann")
    a, b, c = store.reviews.list_flags().items
    store.reviews.review_flag(
        flag_id=a.id, who="ann", state="confirmed", category="slip", notes="kick"
    )
    store.reviews.review_flag(flag_id=b.id, who="ann", state="dismissed")
    # new version: threshold 8 keeps only the 9.0 spike; longer spans with merge
    service.set_rule(name="k", changes={"threshold": 8, "min_duration": 1}, who="bob")
    result = service.apply_rule(name="k", who="bob")
    assert (result.version, result.created, result.updated, result.stale, result.deleted) == (
        2,
        0,
        1,
        1,
        1,
    )
    flags = {f.id: f for f in store.reviews.list_flags().items}
    assert set(flags) == {a.id, b.id}  # c was never reviewed: gone
    assert (flags[a.id].state, flags[a.id].category, flags[a.id].notes) == (
        "confirmed",
        "slip",
        "kick",
    )
    assert flags[a.id].rule_version == 2 and not flags[a.id].stale
    assert flags[b.id].state == "dismissed" and flags[b.id].stale
    assert spans(store, include_stale=False) == [(trace, 10, 12, "confirmed", False)]
    # the old version back: the stale flag is found again and keeps its dismissal
    service.apply_rule(name="k", version=1, who="bob")
    flags = {f.id: f for f in store.reviews.list_flags().items}
    assert not flags[b.id].stale and flags[b.id].state == "dismissed"
    assert [h.action for h in store.reviews.flag_history(flag_id=b.id)] == [
        "review",
        "stale",
        "rule-update",
    ]
    # a moved segment keeps its review and records the move
    service.set_rule(
        name="k", changes={"threshold": 5, "min_duration": 1, "merge_gap": 20}, who="bob"
    )
    service.apply_rule(name="k", who="bob")
    merged = store.reviews.get_flag(flag_id=a.id)
    assert (merged.t0, merged.t1, merged.state) == (10, 52, "confirmed")
    assert store.reviews.flag_history(flag_id=a.id)[-1].changes == {"t0": [10, 10], "t1": [12, 52]}


def test_disabled_rule_clears_open_flags_and_keeps_reviewed_as_stale(store, service):
    add_run(store, {1: [spiky(40, [(5, 6, 9.0), (20, 21, 9.0)])]})
    service.set_rule(name="k", changes=RULE, who="ann")
    service.apply_rule(name="k", who="ann")
    first = store.reviews.list_flags().items[0]
    store.reviews.review_flag(flag_id=first.id, who="ann", tags=["weird", " weird ", ""])
    assert store.reviews.get_flag(flag_id=first.id).tags == ("weird",)
    service.set_rule(name="k", changes={"enabled": "false"}, who="ann")
    service.apply_rules(who="ann")
    assert spans(store) == [(first.trace_id, 5, 6, "open", True)]


def test_robust_threshold_is_per_checkpoint(store, service):
    quiet = [spiky(100, [(50, 52, 3.0)], base=1.0) + 0.01 * np.sin(np.arange(100))]
    loud = [spiky(100, [(50, 52, 3.0)], base=2.0) + 0.5 * np.sin(np.arange(100))]
    ids = add_run(store, {1: quiet, 2: loud})
    service.set_rule(name="m", changes={"metric": "kl", "threshold": 8, "mode": "mad"}, who="a")
    service.apply_rule(name="m", who="a")
    flagged = {f.checkpoint_id for f in store.reviews.list_flags().items}
    assert flagged == {ids["checkpoints"][0]}
    only = service.apply_rule(name="m", who="a", checkpoint_ids=[ids["checkpoints"][1]])
    assert only.traces == 1 and store.reviews.list_flags().total == 1


def test_manual_flags_live_beside_rule_flags(store, service):
    ids = add_run(store, {1: [spiky(30, [(10, 11, 9.0)])]})
    trace = ids["traces"][0]
    manual = store.reviews.create_manual_flag(
        trace_id=trace, t0=8, t1=14, who="ann", category="occlusion"
    )
    assert (manual.source, manual.peak, manual.peak_t, manual.reviewed) == ("manual", 9.0, 10, True)
    service.set_rule(name="k", changes=RULE, who="ann")
    service.apply_rule(name="k", who="ann")
    service.set_rule(name="k", changes={"threshold": 100}, who="ann")
    service.apply_rule(name="k", who="ann")
    assert [f.source for f in store.reviews.list_flags().items] == ["manual"]
    with pytest.raises(BadInputError, match="not within"):
        store.reviews.create_manual_flag(trace_id=trace, t0=20, t1=40, who="ann")
    with pytest.raises(BadInputError, match="unknown category"):
        store.reviews.review_flag(flag_id=manual.id, who="ann", category="ghost")
    store.reviews.delete_manual_flag(flag_id=manual.id, who="ann")
    assert store.reviews.list_flags().total == 0


def test_concurrent_review_edits_are_all_in_the_history(store, service):
    add_run(store, {1: [spiky(30, [(10, 11, 9.0)])]})
    service.set_rule(name="k", changes=RULE, who="ann")
    service.apply_rule(name="k", who="ann")
    flag_id = store.reviews.list_flags().items[0].id
    barrier = threading.Barrier(8)
    errors = []

    def edit(i: int) -> None:
        try:
            barrier.wait()
            state = "confirmed" if i % 2 else "dismissed"
            store.reviews.review_flag(
                flag_id=flag_id, who=f"user{i}", state=state, notes=f"note {i}"
            )
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=edit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    history = store.reviews.flag_history(flag_id=flag_id)
    assert sorted(h.who for h in history) == [f"user{i}" for i in range(8)]
    # each entry's "old" is the previous entry's "new": nobody overwrote unseen
    for prev, cur in zip(history, history[1:], strict=False):
        assert cur.changes["notes"][0] == prev.changes["notes"][1]
    final = store.reviews.get_flag(flag_id=flag_id)
    assert final.notes == history[-1].changes["notes"][1] and final.updated_by == history[-1].who


def test_concurrent_rule_edits_all_land(store, service):
    """Edits of different fields at once: each starts from the newest version, none is lost."""
    service.set_rule(name="k", changes=RULE, who="ann")
    edits = [
        {"threshold": 7},
        {"min_duration": 4},
        {"merge_gap": 3},
        {"severity": "high"},
        {"floor": 2},
        {"normalise": "episode"},
    ]
    barrier = threading.Barrier(len(edits))
    errors = []

    def edit(change: dict) -> None:
        try:
            barrier.wait()
            service.set_rule(name="k", changes=change, who=f"user-{next(iter(change))}")
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=edit, args=(change,)) for change in edits]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    final = store.reviews.get_rule(name="k").rule
    assert {k: getattr(final, k) for change in edits for k in change} == {
        k: v for change in edits for k, v in change.items()
    }
    versions = [i.rule.version for i in store.reviews.list_rules(name="k", all_versions=True)]
    assert versions == list(range(1, len(edits) + 2))


def test_review_queue_ranks_episodes(store, service):
    ids = add_run(
        store,
        {
            1: [
                spiky(40, [(5, 6, 6.0)]),
                spiky(40, [(5, 6, 30.0), (20, 22, 9.0)]),
                spiky(40, []),
            ]
        },
    )
    service.set_rule(name="k", changes=RULE, who="ann")
    service.apply_rule(name="k", who="ann")
    queue = service.review_queue(checkpoint_id=ids["checkpoints"][0])
    assert [e.episode_key for e in queue] == ["ep1", "ep0"]
    assert (queue[0].count, queue[0].peak, queue[0].duration) == (2, 30.0, 5)


def test_findings_from_stored_correction(store, service):
    rng = np.random.default_rng(0)
    collapsed = [np.full(200, 1.0) for _ in range(2)]
    ids = add_run(store, {1: collapsed})
    # correction column is zeros in trace_data: scale = 2 * 4 groups -> collapse
    findings = service.run_findings(run_id=ids["run"][0])
    assert [(f.kind, f.checkpoint) for f in findings] == [("collapse", ids["checkpoints"][0])]
    assert rng is not None


def test_effective_threshold_is_the_level_flags_rise_above(store, service):
    rng = np.random.default_rng(1)
    episodes = [spiky(60, [(20, 23, 9.0)], base=2.0 + i) + 0.3 * rng.random(60) for i in range(3)]
    ids = add_run(store, {1: episodes})
    robust = {"metric": "kl", "mode": "mad", "threshold": 3, "normalise": "episode"}
    service.set_rule(name="m", changes={**robust, "min_duration": 1}, who="ann")
    service.apply_rule(name="m", who="ann")
    traces = store.queries.list_traces(limit=10).items
    for trace, kl in zip(traces, episodes, strict=True):
        level = service.effective_threshold(store.reviews.get_rule(name="m").rule, trace)
        assert level is not None
        flagged = {
            t
            for f in store.reviews.list_flags(trace_id=trace.id).items
            for t in range(f.t0, f.t1 + 1)
        }
        assert flagged == {t for t in range(60) if kl[t] > level}, (trace.id, level)
    first = store.queries.get_trace(trace_id=ids["traces"][0])
    plain = service.set_rule(name="a", changes={**RULE, "floor": 7}, who="ann").rule
    assert service.effective_threshold(plain, first) == 7.0  # the floor is above the threshold
    other = service.set_rule(name="d", changes={**RULE, "variant": "dropout:1-3"}, who="ann").rule
    assert service.effective_threshold(other, first) == 5.0  # a filter trace shows any rule
    ids = add_run(store, {2: [spiky(10, [])]}, name="other", variant="delay:1")
    delayed = store.queries.get_trace(trace_id=ids["traces"][0])
    assert service.effective_threshold(other, delayed) is None  # another variant's traces


def test_metric_columns_read_the_same_cold_and_warm(store):
    kl = spiky(20, [(3, 4, 9.0)])
    kl[7], kl[8] = np.nan, np.inf
    add_run(store, {1: [kl, spiky(5, [])], 2: [spiky(6, [(0, 1, 7.0)])]})
    cold = store.reviews.read_metric_columns(metric="kl")
    warm = store.reviews.read_metric_columns(metric="kl")
    np.testing.assert_array_equal(cold.values, warm.values)
    np.testing.assert_array_equal(cold.values[:20], kl)  # NaN and inf survive
    assert cold.offsets.tolist() == [0, 20, 25, 31]
    one = store.reviews.read_metric_columns(
        metric="kl", checkpoint_ids=[int(cold.checkpoint_ids[2])]
    )
    np.testing.assert_array_equal(one.values, [7.0, 7.0, 1, 1, 1, 1])
    with pytest.raises(BadInputError, match="unknown metric"):
        store.reviews.read_metric_columns(metric="klx")
