"""Score a checkpoint's stored flags against the ground truth of its episodes.

Ground truth (`occluded`, `slip`) lives in the replay files, not in the store: each episode's
is read once (`truth.TruthCache`) and reused for every checkpoint.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from beliefscope.errors import BadInputError
from beliefscope.review.priority import FlagSummary, priority
from beliefscope.review.scoring import EpisodeTruth, score
from beliefscope.review.truth import TruthCache
from beliefscope.store.engine import Store
from beliefscope.values.review import Score, ScoreInfo
from beliefscope.values.traces import BELIEF_VARIANT

SIGNAL_VARIANT = {"belief_jump": BELIEF_VARIANT}
"""Where a metric lives when it is not on the filter trace."""


def training_fingerprints(store: Store, checkpoint_id: int) -> frozenset[str]:
    """Fingerprints of the episodes the checkpoint trained on, where it (or its ingest's
    `--train-replay`) says so; empty when unknown."""
    config = store.queries.get_checkpoint(checkpoint_id=checkpoint_id).config
    return frozenset(str(f) for f in config.get("train_episodes") or ())


def score_checkpoint(
    store: Store,
    *,
    checkpoint_id: int,
    truth: TruthCache,
    rule_names: Sequence[str] | None = None,
    metric: str = "kl",
    split: str = "all",
    resamples: int = 0,
) -> tuple[Score, tuple[str, ...]]:
    """Score the union of the live (not stale) flags of `rule_names` (default: every enabled
    rule), whatever trace variant each rule reads, per episode with ground truth: the places a
    reviewer is sent to. `metric` is the signal of the slip-vs-plain AUC (read from the trace
    variant it lives on). `split` keeps the checkpoint's training episodes (`train`), the
    others (`held-out`) or all of them. Returns the score and `name@version` of the rules."""
    rules = [i.rule for i in store.reviews.list_rules()]
    if rule_names:
        unknown = set(rule_names) - {r.name for r in rules}
        if unknown:
            raise BadInputError(f"unknown rule(s): {', '.join(sorted(unknown))}")
        rules = [r for r in rules if r.name in rule_names]
    else:
        rules = [r for r in rules if r.enabled]
    wanted = {(r.name, r.variant) for r in rules}
    flags: dict[int, list[FlagSummary]] = defaultdict(list)
    live = store.reviews.all_flags(checkpoint_id=checkpoint_id, source="rule", include_stale=False)
    for f in live:
        if (f.rule_name, f.variant) in wanted:
            flags[f.episode_id].append(FlagSummary(f.t0, f.t1, f.peak, f.severity, f.state))
    trained = training_fingerprints(store, checkpoint_id)
    variant = SIGNAL_VARIANT.get(metric, "filter")
    cols = store.reviews.read_metric_columns(
        metric=metric, variant=variant, checkpoint_ids=[checkpoint_id]
    )
    episodes = []
    for i, episode_id in enumerate(cols.episode_ids.tolist()):
        known = truth.get(episode_id)
        if known is None:
            continue
        if split != "all":
            fingerprint = store.queries.get_episode(episode_id=episode_id).fingerprint
            if (fingerprint in trained) != (split == "train"):
                continue
        occluded, slip = known.occluded, known.slip
        signal = cols.values[cols.offsets[i] : cols.offsets[i + 1]]
        if len(signal) != len(occluded):
            raise BadInputError(
                f"episode {episode_id}: trace has {len(signal)} steps, truth {len(occluded)}"
            )
        mine = flags.get(episode_id, [])
        episodes.append(
            EpisodeTruth(occluded, slip, signal, [(f.t0, f.t1) for f in mine], priority(mine).score)
        )
    labels = tuple(f"{r.name}@{r.version}" for r in rules)
    return score(episodes, resamples=resamples), labels


def splits_of(store: Store, checkpoint_id: int) -> tuple[str, ...]:
    """The splits a checkpoint can be scored on: held-out and train where it records its
    training episodes, else only all."""
    if training_fingerprints(store, checkpoint_id):
        return ("held-out", "train", "all")
    return ("all",)


def rescore(
    store: Store,
    *,
    checkpoint_id: int,
    truth: TruthCache,
    rule_names: Sequence[str] | None = None,
    metric: str = "kl",
    resamples: int = 1000,
) -> list[ScoreInfo]:
    """Score a checkpoint on each of its splits and store the scores."""
    saved = []
    for split in splits_of(store, checkpoint_id):
        score_, rules = score_checkpoint(
            store,
            checkpoint_id=checkpoint_id,
            truth=truth,
            rule_names=rule_names,
            metric=metric,
            split=split,
            resamples=resamples,
        )
        saved.append(
            store.reviews.save_score(
                checkpoint_id=checkpoint_id, score=score_, rules=rules, split=split
            )
        )
    return saved
