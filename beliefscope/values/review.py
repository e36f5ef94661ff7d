"""The review domain: flag rules, flags and their history, scores against ground truth.

A rule marks step t when its metric passes the threshold, keeps runs of at least
`min_duration` consecutive marked steps, and merges kept runs separated by at most `merge_gap`
unmarked steps into one flag. Thresholds are absolute or robust per checkpoint (median + k x
MAD, or a percentile of the checkpoint's steps), because a metric's scale drifts as a model
trains. The floor is on the raw metric value: early checkpoints collapse KL to the free-bits
level with a MAD near zero, and without a floor every wobble above that level would be flagged.

Rules are values here (`make_rule` validates loose input); `beliefscope.review.segments` finds
their flags, `beliefscope.store` versions them, `beliefscope.review.service` applies them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Literal

import numpy as np

from beliefscope.errors import BadInputError
from beliefscope.values.traces import METRICS

FLAG_STATES = ("open", "confirmed", "dismissed")
FLAG_CATEGORIES = ("occlusion", "slip", "delay", "other")
FLAG_SOURCES = ("rule", "manual")
SPLITS = ("all", "train", "held-out")
"""Which of a checkpoint's episodes a score covers: all, those it trained on, the others."""

ThresholdMode = Literal["absolute", "mad", "percentile"]
Normalise = Literal["none", "episode"]
Severity = Literal["low", "medium", "high"]

THRESHOLD_MODES: tuple[str, ...] = ("absolute", "mad", "percentile")
NORMALISE: tuple[str, ...] = ("none", "episode")
SEVERITIES: tuple[str, ...] = ("low", "medium", "high")


@dataclass(frozen=True)
class Rule:
    """One flag rule. Build it with `make_rule` (validates); `version` 0 means not yet stored."""

    name: str
    metric: str
    threshold: float
    """The absolute value, the k of median + k x MAD, or the percentile (0..100)."""
    mode: ThresholdMode = "mad"
    floor: float | None = None
    """A step only counts when its raw metric value is at least this."""
    normalise: Normalise = "none"
    """`episode`: subtract each trace's median before thresholding (the floor stays raw)."""
    min_duration: int = 2
    """Consecutive marked steps needed for a run to count."""
    merge_gap: int = 0
    """Kept runs at most this many unmarked steps apart become one flag."""
    severity: Severity = "medium"
    variant: str = "filter"
    """Which trace variant the rule reads (`filter` = the recorded episodes as they happened)."""
    enabled: bool = True
    version: int = 0

    def definition(self) -> dict[str, Any]:
        """What makes two versions differ: everything but the version number."""
        data = asdict(self)
        data.pop("version")
        return data

    def describe(self) -> str:
        if self.mode == "absolute":
            test = f"{self.metric} > {self.threshold:g}"
        elif self.mode == "mad":
            test = f"{self.metric} > median + {self.threshold:g} MAD"
        else:
            test = f"{self.metric} > p{self.threshold:g}"
        if self.normalise == "episode":
            test += " (episode-normalised)"
        if self.floor is not None:
            test += f", >= {self.floor:g} raw"
        gap = f", merge gap {self.merge_gap}" if self.merge_gap else ""
        return f"{test} for >= {self.min_duration} steps{gap} [{self.severity}]"


_FIELDS = {f.name for f in fields(Rule)}


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise BadInputError(f"rule {name}: {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"rule {name}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise BadInputError(f"rule {name}: {value!r} is not a finite number")
    return number


def _integer(name: str, value: Any, minimum: int) -> int:
    number = _number(name, value)
    if number != int(number):
        raise BadInputError(f"rule {name}: {value!r} is not a whole number of steps")
    if number < minimum:
        raise BadInputError(f"rule {name}: {value!r} must be at least {minimum}")
    return int(number)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise BadInputError(f"rule {name}: {value!r} is not one of {', '.join(choices)}")
    return str(value)


def make_rule(data: Mapping[str, Any]) -> Rule:
    """A validated rule from loose input (CLI strings, JSON bodies); a clear error otherwise."""
    unknown = set(data) - _FIELDS
    if unknown:
        raise BadInputError(f"rule: unknown field(s) {', '.join(sorted(unknown))}")
    for required in ("name", "metric", "threshold"):
        if data.get(required) in (None, ""):
            raise BadInputError(f"rule: {required!r} is required")
    name = str(data["name"]).strip()
    if not name or len(name) > 100:
        raise BadInputError(f"rule name {name!r} must be 1..100 characters")
    metric = str(data["metric"])
    if metric not in METRICS:
        raise BadInputError(f"rule {name}: unknown metric {metric!r}; known: {', '.join(METRICS)}")
    mode = _choice("mode", data.get("mode", "mad"), THRESHOLD_MODES)
    threshold = _number("threshold", data["threshold"])
    if mode == "percentile" and not 0.0 <= threshold <= 100.0:
        raise BadInputError(f"rule {name}: percentile {threshold:g} is not within 0..100")
    if mode == "mad" and threshold < 0:
        raise BadInputError(f"rule {name}: MAD multiplier {threshold:g} must not be negative")
    floor = data.get("floor")
    enabled = data.get("enabled", True)
    if isinstance(enabled, str):
        if enabled.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise BadInputError(f"rule enabled: {enabled!r} is not true or false")
        enabled = enabled.lower() in ("true", "1", "yes")
    return Rule(
        name=name,
        metric=metric,
        threshold=threshold,
        mode=mode,  # type: ignore[arg-type]
        floor=None if floor in (None, "", "none") else _number("floor", floor),
        normalise=_choice("normalise", data.get("normalise", "none"), NORMALISE),  # type: ignore[arg-type]
        min_duration=_integer("min_duration", data.get("min_duration", 2), 1),
        merge_gap=_integer("merge_gap", data.get("merge_gap", 0), 0),
        severity=_choice("severity", data.get("severity", "medium"), SEVERITIES),  # type: ignore[arg-type]
        variant=str(data.get("variant", "filter")),
        enabled=bool(enabled),
        version=_integer("version", data.get("version", 0), 0),
    )


def edit_rule(rule: Rule, changes: Mapping[str, Any]) -> Rule:
    """`rule` with `changes` applied and validated again (the version is left to the store)."""
    merged = {**asdict(rule), **changes}
    return replace(make_rule(merged), version=rule.version)


@dataclass(frozen=True)
class RuleInfo:
    """A stored version of a rule."""

    id: int
    rule: Rule
    created: datetime
    created_by: str


@dataclass(frozen=True)
class FlagInfo:
    """A flag with the trace it sits on and where that trace comes from (run, checkpoint,
    episode), so a list of flags is shown without a read per flag."""

    id: int
    trace_id: int
    checkpoint_id: int
    episode_id: int
    variant: str
    t0: int
    t1: int
    source: str  # "rule" or "manual"
    rule_name: str | None
    rule_version: int | None
    peak: float | None
    peak_t: int | None
    severity: str
    state: str  # open, confirmed, dismissed
    category: str | None
    tags: tuple[str, ...]
    notes: str
    reviewed: bool
    stale: bool  # a reviewed rule flag the rule's current version no longer finds
    created: datetime
    updated: datetime
    updated_by: str
    run_id: int
    run_name: str
    checkpoint_step: int | None
    episode_key: str
    deleted: datetime | None = None  # set on a deleted flag (only admins read those)
    deleted_by: str | None = None


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    flag_id: int
    at: datetime
    who: str
    action: str  # create, review, rule-update, stale, revived
    changes: dict[str, list[Any]]


@dataclass(frozen=True)
class RuleFlag:
    """An existing rule flag as reconciling it with a rule's new segments sees it."""

    id: int
    trace_id: int
    t0: int
    t1: int
    reviewed: bool
    stale: bool


@dataclass(frozen=True)
class Found:
    """A segment a rule found on a trace: the bounds and peak its flag takes."""

    trace_id: int
    t0: int
    t1: int
    peak: float  # NaN when no step inside is finite
    peak_t: int


@dataclass(frozen=True)
class FlagPlan:
    """What re-applying a rule changes, decided by `beliefscope.review.reconcile` and written
    by the store in the transaction that read the existing flags."""

    inserts: tuple[Found, ...] = ()
    updates: tuple[tuple[int, Found], ...] = ()  # (existing flag id, its new bounds and peak)
    deletes: tuple[int, ...] = ()  # unreviewed flags the rule no longer finds
    stales: tuple[int, ...] = ()  # reviewed flags it no longer finds
    history: tuple[tuple[int, str, dict[str, list[Any]]], ...] = ()  # (flag id, action, changes)


@dataclass(frozen=True)
class ApplyResult:
    rule: str
    version: int
    traces: int
    steps: int
    created: int
    updated: int
    stale: int
    deleted: int
    read_s: float
    compute_s: float
    write_s: float


@dataclass(frozen=True)
class EpisodePriority:
    episode_id: int
    episode_key: str
    trace_id: int
    score: float
    count: int
    peak: float
    duration: int


@dataclass(frozen=True)
class Score:
    """Scores of one checkpoint; NaN where a figure is undefined (no events, no flags).
    `intervals` holds a 95% bootstrap interval per figure (episodes resampled), where asked."""

    slip_recall: float
    reappearance_recall: float
    precision: float
    slip_auc: float
    episode_ap: float
    slip_events: int
    plain_events: int
    flags: int
    episodes: int
    slip_episodes: int
    slip_precision: float = float("nan")
    """Flags at a slip reappearance / flags: how often a flagged place is what matters."""
    plain_flagged: float = float("nan")
    """Plain reappearances flagged / plain reappearances: the false alarms a reviewer meets."""
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ScoreInfo:
    id: int
    checkpoint_id: int
    step: int | None
    rules: tuple[str, ...]
    score: Score
    created: datetime
    split: str = "all"
    """`all`, `train` (the episodes the checkpoint trained on) or `held-out` (the others)."""


@dataclass(frozen=True)
class ProbeSummaryInfo:
    """One checkpoint's stored summary of a probe (or of the audit), as plain JSON data."""

    checkpoint_id: int
    step: int | None
    probe: str
    data: dict[str, Any]
    created: datetime


@dataclass(frozen=True, eq=False)
class MetricColumns:
    """One metric of many traces, concatenated in trace-id order (see `review.segments`)."""

    trace_ids: np.ndarray  # (n,) int64
    checkpoint_ids: np.ndarray  # (n,)
    episode_ids: np.ndarray  # (n,)
    offsets: np.ndarray  # (n + 1,)
    values: np.ndarray  # (N,) float64, NaN where not finite-stored or not computed
