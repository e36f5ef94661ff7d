"""The review service: what the review workflow does with the store's rules, flags and metric
columns (`store.reviews`), for the CLI, ingest, the API and the dashboard alike.

Applying a rule reads one metric column of every matching trace in bulk and recomputes its
flags with `segments` (no model runs), then reconciles them with the flags people reviewed
(`reconcile`). The queue ranks episodes by their flags, findings diagnose whole checkpoints,
and `effective_threshold` says which raw metric level a rule holds one trace to.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from beliefscope.errors import BeliefscopeError
from beliefscope.review import diagnostics, segments
from beliefscope.review.priority import FlagSummary, priority
from beliefscope.review.reconcile import plan_flags
from beliefscope.review.rules import DEFAULT_RULES
from beliefscope.review.truth import FlagTruth, GroundTruth, TruthCache, TruthFacts
from beliefscope.values.page import MAX_LIMIT
from beliefscope.values.review import (
    ApplyResult,
    EpisodePriority,
    FlagInfo,
    Found,
    Rule,
    RuleInfo,
)
from beliefscope.values.traces import TraceInfo

if TYPE_CHECKING:
    from beliefscope.store.engine import Store


class ReviewService:
    """Review logic over one store; as safe to share between threads as the store itself."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._reviews = store.reviews
        self.truth = TruthCache(store)
        """Ground truth read from the replay files, kept for the service's life."""

    # -- rules -------------------------------------------------------------------------------

    def set_rule(self, *, name: str, changes: Mapping[str, Any], who: str) -> RuleInfo:
        """Create or edit a rule from loose values (CLI strings, a JSON body): the newest
        version plus `changes` (see `update_rule`); a shipped rule not stored yet is edited
        from its default."""
        default = next((r for r in DEFAULT_RULES if r.name == name), None)
        return self._reviews.update_rule(name=name, changes=changes, who=who, default=default)

    def ensure_default_rules(self, *, who: str = "beliefscope") -> tuple[RuleInfo, ...]:
        """Store the shipped rules whose names are not stored yet (never overrides an edit)."""
        known = {info.rule.name for info in self._reviews.list_rules()}
        for rule in DEFAULT_RULES:
            if rule.name not in known:
                self._reviews.save_rule(rule=rule, who=who)
        return self._reviews.list_rules()

    def apply_rule(
        self,
        *,
        name: str,
        who: str,
        version: int | None = None,
        run_id: int | None = None,
        checkpoint_ids: Sequence[int] | None = None,
    ) -> ApplyResult:
        """Recompute the flags of rule `name` (newest version unless given) over the traces
        of its variant in scope, keeping every human review (see `reconcile`)."""
        info = self._reviews.get_rule(name=name, version=version)
        rule = info.rule
        started = time.perf_counter()
        cols = self._reviews.read_metric_columns(
            metric=rule.metric, variant=rule.variant, run_id=run_id, checkpoint_ids=checkpoint_ids
        )
        read_done = time.perf_counter()
        if rule.enabled:
            hits = segments.apply_rule(rule, cols.values, cols.offsets, cols.checkpoint_ids)
        else:  # a disabled rule finds nothing: its unreviewed flags go, reviewed ones turn stale
            hits = segments.apply_rule(rule, cols.values[:0], np.zeros(1, np.int64))
        found = [
            Found(int(trace), int(t0), int(t1), float(peak), int(peak_t))
            for trace, t0, t1, peak, peak_t in zip(
                cols.trace_ids[hits.trace], hits.t0, hits.t1, hits.peak, hits.peak_t, strict=True
            )
        ]
        computed = time.perf_counter()
        plan = self._reviews.reconcile_rule_flags(
            rule=info,
            trace_ids=cols.trace_ids.tolist(),
            who=who,
            plan=lambda old: plan_flags(found, old),
        )
        return ApplyResult(
            rule.name,
            rule.version,
            len(cols.trace_ids),
            len(cols.values),
            created=len(plan.inserts),
            updated=len(plan.updates),
            stale=len(plan.stales),
            deleted=len(plan.deletes),
            read_s=read_done - started,
            compute_s=computed - read_done,
            write_s=time.perf_counter() - computed,
        )

    def apply_rules(
        self,
        *,
        who: str,
        run_id: int | None = None,
        checkpoint_ids: Sequence[int] | None = None,
    ) -> tuple[ApplyResult, ...]:
        """Apply the newest version of every stored rule (disabled ones clear their open
        flags)."""
        return tuple(
            self.apply_rule(name=i.rule.name, who=who, run_id=run_id, checkpoint_ids=checkpoint_ids)
            for i in self._reviews.list_rules()
        )

    def effective_threshold(self, rule: Rule, trace: TraceInfo) -> float | None:
        """The raw metric level `rule` holds this trace to: robust thresholds are computed over
        the trace's checkpoint, episode-normalised ones shifted back by the trace's median, and
        the floor applies. None when the rule reads another trace variant or cannot tell."""
        if rule.variant != trace.variant and trace.variant != "filter":
            return None
        if rule.mode == "absolute" and rule.normalise == "none":
            level = rule.threshold
        else:
            cols = self._reviews.read_metric_columns(
                metric=rule.metric, variant=rule.variant, checkpoint_ids=[trace.checkpoint_id]
            )
            mine = np.flatnonzero(cols.trace_ids == trace.id)
            if not len(mine):
                return None
            values = cols.values
            if rule.normalise == "episode":
                values = segments.episode_normalise(values, cols.offsets)
            levels = segments.group_thresholds(rule, values, cols.offsets, cols.checkpoint_ids)
            level = float(levels[mine[0]])
            if rule.normalise == "episode":
                own = cols.values[cols.offsets[mine[0]] : cols.offsets[mine[0] + 1]]
                own = own[np.isfinite(own)]
                level += float(np.median(own)) if len(own) else 0.0
        if rule.floor is not None:
            level = max(level, rule.floor)
        return float(level) if np.isfinite(level) else None

    # -- the episode review queue ------------------------------------------------------------

    def review_queue(
        self, *, checkpoint_id: int, variant: str = "filter", limit: int = 50
    ) -> tuple[EpisodePriority, ...]:
        """Episodes of a checkpoint ranked by review priority (from their non-dismissed
        flags); episodes without flags are left out."""
        flags = self._reviews.all_flags(checkpoint_id=checkpoint_id, variant=variant)
        by_episode: dict[tuple[int, str, int], list[FlagSummary]] = defaultdict(list)
        for f in flags:
            by_episode[(f.episode_id, f.episode_key, f.trace_id)].append(
                FlagSummary(f.t0, f.t1, f.peak, f.severity, f.state)
            )
        ranked = []
        for (episode_id, key, trace_id), summaries in by_episode.items():
            p = priority(summaries)
            if p.count:
                ranked.append(
                    EpisodePriority(episode_id, key, trace_id, p.score, p.count, p.peak, p.duration)
                )
        ranked.sort(key=lambda e: (-e.score, e.episode_id))
        return tuple(ranked[:limit])

    def episode_priorities(
        self, *, checkpoint_id: int, variant: str = "filter"
    ) -> dict[int, float]:
        """Every flagged episode's priority score (episode id -> score) for one checkpoint."""
        queue = self.review_queue(checkpoint_id=checkpoint_id, variant=variant, limit=10**9)
        return {e.episode_id: e.score for e in queue}

    # -- ground truth ------------------------------------------------------------------------

    def episode_truth(self, *, episode_id: int) -> GroundTruth | None:
        """The episode's ground truth (None when its replay records none)."""
        return self.truth.of(self._store.queries.get_episode(episode_id=episode_id))

    def truth_facts(
        self, *, run_id: int, checkpoint_id: int | None, variant: str = "filter"
    ) -> dict[int, TruthFacts]:
        """Episode id -> occlusions, slips and slip reappearances the checkpoint's live flags
        overlap, for the run's episodes with readable ground truth."""
        episodes = self._store.queries.list_episodes(
            run_id=run_id, has_truth=True, limit=MAX_LIMIT
        ).items
        flags = (
            self._reviews.all_flags(
                checkpoint_id=checkpoint_id, variant=variant, include_stale=False
            )
            if checkpoint_id is not None
            else []
        )
        return self.truth.facts(episodes, ((f.episode_id, f.t0, f.t1) for f in flags))

    def flag_truth(self, flags: Sequence[FlagInfo]) -> dict[int, FlagTruth]:
        """Flag id -> its episode's occlusions and slips and whether the flag overlaps a slip
        reappearance, for the flags whose episode has readable ground truth."""
        infos = {}
        for run_id in {f.run_id for f in flags}:
            for e in self._store.queries.list_episodes(
                run_id=run_id, has_truth=True, limit=MAX_LIMIT
            ).items:
                infos[e.id] = e
        out = {}
        for f in flags:
            info = infos.get(f.episode_id)
            try:
                truth = self.truth.of(info) if info is not None else None
            except BeliefscopeError:
                truth = None
            if truth is not None:
                out[f.id] = FlagTruth(truth.occlusions, truth.slips, truth.at_slip(f.t0, f.t1))
        return out

    # -- chronic findings --------------------------------------------------------------------

    def run_findings(
        self,
        *,
        run_id: int,
        variant: str = "filter",
        params: diagnostics.DiagnosticParams | None = None,
    ) -> tuple[diagnostics.Finding, ...]:
        """Chronic findings of a run's checkpoints (computed from stored correction, not
        stored)."""
        cols = self._reviews.read_metric_columns(
            metric="correction", variant=variant, run_id=run_id
        )
        ckpts = self._store.queries.list_checkpoints(run_id=run_id, limit=MAX_LIMIT).items
        params = params or diagnostics.DiagnosticParams()
        columns, unscaled = [], []
        for ckpt in ckpts:
            idx = np.flatnonzero(cols.checkpoint_ids == ckpt.id)
            if not len(idx):
                continue
            parts = [cols.values[cols.offsets[i] : cols.offsets[i + 1]] for i in idx]
            offsets = np.concatenate(([0], np.cumsum([len(p) for p in parts]))).astype(np.int64)
            scale = diagnostics.correction_scale(ckpt.config or {})
            columns.append(
                diagnostics.CheckpointColumn(
                    ckpt.id, ckpt.step, np.concatenate(parts), offsets, scale or 1.0
                )
            )
            if scale is None:
                unscaled.append(ckpt.id)
        findings = [
            f
            for c in columns
            if c.checkpoint not in unscaled
            for f in diagnostics.checkpoint_findings(c, params)
        ]
        collapsed = {f.checkpoint for f in findings if f.kind == "collapse"}
        findings += diagnostics.trend_findings(columns, collapsed, params)
        return tuple(findings)
