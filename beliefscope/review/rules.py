"""Flag rules: what counts as a stretch of steps worth a human look.

A rule marks step t when its metric passes the threshold, keeps runs of at least
`min_duration` consecutive marked steps, and merges kept runs separated by at most `merge_gap`
unmarked steps into one flag. Thresholds are absolute or robust per checkpoint (median + k x
MAD, or a percentile of the checkpoint's steps), because a metric's scale drifts as a model
trains. The floor is on the raw metric value: early checkpoints collapse KL to the free-bits
level with a MAD near zero, and without a floor every wobble above that level would be flagged.

Rules are values here; storing and versioning them is `beliefscope.store.review_store`'s job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from beliefscope.errors import BadInputError
from beliefscope.trace import METRICS

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
    probe: str = "filter"
    """Which traces the rule reads (`filter` = the recorded episodes as they happened)."""
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
        probe=str(data.get("probe", "filter")),
        enabled=bool(enabled),
        version=_integer("version", data.get("version", 0), 0),
    )


def edit_rule(rule: Rule, changes: Mapping[str, Any]) -> Rule:
    """`rule` with `changes` applied and validated again (the version is left to the store)."""
    merged = {**asdict(rule), **changes}
    return replace(make_rule(merged), version=rule.version)


DEFAULT_RULES: tuple[Rule, ...] = (
    make_rule(
        {
            "name": "kl-spike",
            "metric": "kl",
            "mode": "mad",
            "threshold": 3.0,
            "floor": 4.0,
            "normalise": "episode",
            "min_duration": 2,
            "merge_gap": 3,
            "severity": "high",
        }
    ),
    make_rule(
        {
            "name": "correction-spike",
            "metric": "correction",
            "mode": "mad",
            "threshold": 2.0,
            "floor": 8.0,
            "normalise": "episode",
            "min_duration": 2,
            "merge_gap": 3,
            "severity": "medium",
        }
    ),
)
"""Shipped rules. KL's free-bits level is 1 nat, so its floor sits well above it; the L1
correction of a collapsed posterior is near 0. Chosen by a sweep (mode, k, floor,
normalisation, duration, gap; flags of at most 8 steps on average) over the demo model's
1500-update checkpoint on 64 occlusion-world episodes: kl-spike found 57% of slip
reappearances at 48% precision, correction-spike 59% at 44% (the best balanced settings;
that model is as surprised by a plain reappearance as by a slip, slip-vs-plain AUC 0.56)."""
