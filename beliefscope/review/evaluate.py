"""Score a checkpoint's stored flags against the ground truth of its episodes.

Ground truth (`occluded`, `slip`) lives in the replay files, not in the store: each episode is
re-read once through its replay format and reused for every checkpoint.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from beliefscope.errors import BadInputError, BeliefscopeError
from beliefscope.replay.base import EpisodeRef, get_format
from beliefscope.review.priority import FlagSummary, priority
from beliefscope.review.scoring import EpisodeTruth, Score, score
from beliefscope.store import review_store as rs
from beliefscope.store.engine import Store
from beliefscope.store.values import EpisodeInfo

Truth = tuple[np.ndarray, np.ndarray]  # occluded, slip


class TruthCache:
    """Episode id -> (occluded, slip), loaded on first use."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache: dict[int, Truth | None] = {}

    def get(self, episode_id: int) -> Truth | None:
        if episode_id not in self._cache:
            info = self._store.queries.get_episode(episode_id=episode_id)
            self._cache[episode_id] = _load_truth(info) if info.has_truth else None
        return self._cache[episode_id]


def _load_truth(info: EpisodeInfo) -> Truth | None:
    ref = EpisodeRef(
        info.format,
        Path(info.source_path),
        info.key,
        info.length,
        int(info.locator.get("part", 0)),
        tuple(info.locator.get("extra", ())),
    )
    try:
        episode = get_format(info.format).load(ref)
    except (OSError, BeliefscopeError) as err:
        raise BadInputError(f"cannot read ground truth of episode {info.key}: {err}") from None
    if "occluded" not in episode.truth:
        return None
    occluded = np.asarray(episode.truth["occluded"], bool)
    slip = np.asarray(episode.truth.get("slip", np.zeros(len(occluded))), bool)
    return occluded, slip


def score_checkpoint(
    store: Store,
    *,
    checkpoint_id: int,
    truth: TruthCache,
    rule_names: Sequence[str] | None = None,
    metric: str = "kl",
    probe: str = "filter",
) -> tuple[Score, tuple[str, ...]]:
    """Score the live (not stale) rule flags of `rule_names` (default: every enabled rule) on
    the checkpoint's episodes that have ground truth; returns the score and `name@version` of
    the rules scored."""
    rules = [i.rule for i in rs.list_rules(store)]
    if rule_names:
        unknown = set(rule_names) - {r.name for r in rules}
        if unknown:
            raise BadInputError(f"unknown rule(s): {', '.join(sorted(unknown))}")
        rules = [r for r in rules if r.name in rule_names]
    else:
        rules = [r for r in rules if r.enabled]
    names = {r.name for r in rules}
    cols = rs.read_metric_columns(store, metric=metric, probe=probe, checkpoint_ids=[checkpoint_id])
    flags: dict[int, list[FlagSummary]] = defaultdict(list)
    page = rs.list_flags(
        store, checkpoint_id=checkpoint_id, source="rule", include_stale=False, limit=rs.MAX_LIMIT
    )
    offset = 0
    while True:
        for f in page.items:
            if f.rule_name in names and f.probe == probe:
                flags[f.trace_id].append(FlagSummary(f.t0, f.t1, f.peak, f.severity, f.state))
        offset += len(page.items)
        if offset >= page.total:
            break
        page = rs.list_flags(
            store,
            checkpoint_id=checkpoint_id,
            source="rule",
            include_stale=False,
            limit=rs.MAX_LIMIT,
            offset=offset,
        )
    episodes = []
    for i, (trace_id, episode_id) in enumerate(
        zip(cols.trace_ids.tolist(), cols.episode_ids.tolist(), strict=True)
    ):
        known = truth.get(episode_id)
        if known is None:
            continue
        occluded, slip = known
        signal = cols.values[cols.offsets[i] : cols.offsets[i + 1]]
        if len(signal) != len(occluded):
            raise BadInputError(
                f"episode {episode_id}: trace has {len(signal)} steps, truth {len(occluded)}"
            )
        mine = flags.get(trace_id, [])
        episodes.append(
            EpisodeTruth(occluded, slip, signal, [(f.t0, f.t1) for f in mine], priority(mine).score)
        )
    labels = tuple(f"{r.name}@{r.version}" for r in rules)
    return score(episodes), labels
