"""What pages read, composed from the store's read surfaces (`queries`, `reviews`) and the
review service.

No SQL and no review logic here: this module only combines their values for a view.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from beliefscope.errors import BeliefscopeError, NotFoundError
from beliefscope.review.truth import GroundTruth
from beliefscope.store.downsample import minmax_indices
from beliefscope.values.page import MAX_LIMIT
from beliefscope.values.review import FlagInfo, Rule
from beliefscope.values.traces import CheckpointInfo, EpisodeInfo, Series, TraceInfo
from dashboard.context import current
from dashboard.figures import EPISODE_METRICS, TruthLane

MAX_POINTS = 1500
"""Points per series in a plot (min/max per bucket, so spikes survive)."""
HEATMAP_COLUMNS = 500


def checkpoints_of(run_id: int) -> list[CheckpointInfo]:
    return list(current().queries.list_checkpoints(run_id=run_id, limit=MAX_LIMIT).items)


def traces_of_episode(episode_id: int) -> list[TraceInfo]:
    return list(current().queries.list_traces(episode_id=episode_id, limit=MAX_LIMIT).items)


def pick_trace(
    traces: Sequence[TraceInfo],
    checkpoint_id: int | None,
    variant: str,
    order: Sequence[int] = (),
) -> TraceInfo | None:
    """The `mode` trace of (checkpoint, variant), and the plain filter trace when the variant
    does not exist there. Without a checkpoint (or one with no trace here): the latest by
    training step (`order`: the run's checkpoint ids by step) that has one."""
    if not traces:
        return None
    if checkpoint_id is None or all(t.checkpoint_id != checkpoint_id for t in traces):
        rank = {c: i for i, c in enumerate(order)}
        checkpoint_id = max(
            traces, key=lambda t: (rank.get(t.checkpoint_id, -1), t.checkpoint_id)
        ).checkpoint_id
    mine = [t for t in traces if t.checkpoint_id == checkpoint_id]
    for want in (variant, "filter"):
        for posterior in ("mode", None):
            found = [t for t in mine if t.variant == want and posterior in (None, t.posterior)]
            if found:
                return found[0]
    return mine[0] if mine else None


def trace_series(
    trace: TraceInfo,
    *,
    t0: int | None = None,
    t1: int | None = None,
    metrics: Sequence[str] = EPISODE_METRICS,
    max_points: int = MAX_POINTS,
) -> tuple[dict[str, Series], tuple[np.ndarray, np.ndarray] | None]:
    """The plotted series of a trace's window, min/max downsampled, and its per-group KL."""
    q = current().queries
    read = q.read_trace(trace_id=trace.id, metrics=metrics, t0=t0, t1=t1, max_points=max_points)
    groups = None
    if "kl_groups" in trace.arrays:
        arr = q.read_array(
            trace_id=trace.id, name="kl_groups", t0=t0, t1=t1, max_points=HEATMAP_COLUMNS
        )
        groups = (arr.t, np.asarray(arr.values, dtype=np.float32))
    return read.series, groups


def truth_of(episode: EpisodeInfo) -> tuple[GroundTruth | None, str | None]:
    """The episode's ground truth, or why it cannot be shown (its replay file unreadable)."""
    try:
        return current().reviews.truth.of(episode), None
    except BeliefscopeError as err:
        return None, str(err)


def truth_lane(truth: GroundTruth, *, t0: int | None = None, t1: int | None = None) -> TruthLane:
    """What the ground-truth lane draws over steps t0..t1 (the visible fraction min/max
    downsampled like the metrics)."""
    visible = None
    if truth.visible_frac is not None:
        lo = 0 if t0 is None else max(t0, 0)
        hi = len(truth.visible_frac) if t1 is None else min(t1 + 1, len(truth.visible_frac))
        t = np.arange(lo, max(lo, hi))
        values = truth.visible_frac[lo:hi].astype(np.float64)
        keep = minmax_indices(t, values, MAX_POINTS)
        visible = Series(t[keep], values[keep])
    return TruthLane(truth.occluded_spans(), np.flatnonzero(truth.slip), visible)


def flags_of(trace_id: int) -> list[FlagInfo]:
    page = current().store.reviews.list_flags(trace_id=trace_id, limit=MAX_LIMIT)
    return list(page.items)


def rule_for(metric_hint: str | None = None) -> Rule | None:
    """The active (enabled, newest) rule on `metric_hint`, else the first enabled rule."""
    rules = [i.rule for i in current().store.reviews.list_rules() if i.rule.enabled]
    for rule in rules:
        if metric_hint is None or rule.metric == metric_hint:
            return rule
    return rules[0] if rules else None


def only_in_one(a: Iterable[FlagInfo], b: Iterable[FlagInfo]) -> tuple[set[int], set[int]]:
    """Ids of A's flags that overlap no flag of B, and of B's that overlap none of A's."""
    a, b = list(a), list(b)
    overlaps = lambda f, g: f.t0 <= g.t1 and g.t0 <= f.t1  # noqa: E731
    only_a = {f.id for f in a if not any(overlaps(f, g) for g in b)}
    only_b = {g.id for g in b if not any(overlaps(g, f) for f in a)}
    return only_a, only_b


def get_or_none(fn, **kwargs):
    """`fn(**kwargs)`, or None for a missing id (a stale deep link shows a message)."""
    try:
        return fn(**kwargs)
    except NotFoundError:
        return None
