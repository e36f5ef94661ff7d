"""An episode's review priority, from its flags: what a review queue sorts by."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

SEVERITY_WEIGHT = {"low": 1.0, "medium": 2.0, "high": 3.0}
STATE_WEIGHT = {"open": 1.0, "confirmed": 2.0, "dismissed": 0.0}
"""A confirmed flag counts double; a dismissed one no longer asks for attention."""


@dataclass(frozen=True)
class FlagSummary:
    """What priority needs of a flag."""

    t0: int
    t1: int
    peak: float | None
    severity: str
    state: str = "open"


@dataclass(frozen=True)
class Priority:
    score: float
    count: int
    peak: float
    duration: int


def flag_weight(flag: FlagSummary) -> float:
    """Severity x review state x strength, where strength grows with the peak and (slowly)
    with the length: a tall spike outranks a long low plateau."""
    peak = flag.peak if flag.peak is not None and math.isfinite(flag.peak) else 0.0
    strength = math.log1p(max(peak, 0.0)) + 0.25 * math.log1p(flag.t1 - flag.t0 + 1)
    return SEVERITY_WEIGHT.get(flag.severity, 1.0) * STATE_WEIGHT.get(flag.state, 1.0) * strength


def priority(flags: Iterable[FlagSummary]) -> Priority:
    live = [f for f in flags if f.state != "dismissed"]
    peaks = [f.peak for f in live if f.peak is not None and math.isfinite(f.peak)]
    return Priority(
        score=sum(flag_weight(f) for f in live),
        count=len(live),
        peak=max(peaks) if peaks else float("nan"),
        duration=sum(f.t1 - f.t0 + 1 for f in live),
    )
