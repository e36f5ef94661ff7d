"""Chronic diagnostics: problems of a whole checkpoint (or run) rather than of a moment.

- collapse: the correction is near zero almost everywhere, so the posterior is the prior and
  the encoder is being ignored (typical of early checkpoints sitting at the free-bits floor);
- no memory: the correction stays large for long stretches, so the dynamics predict nothing
  and every frame has to be re-explained from scratch;
- rising trend: over the last checkpoints the median correction climbs steadily, an early
  warning that often precedes a collapse of the return.

Levels are fractions of the correction's scale: for categorical latents the L1 between two
probability vectors is at most 2 per group, so the scale is `2 x groups`; other latents pass
their own scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from beliefscope.review.segments import runs, single


@dataclass(frozen=True)
class DiagnosticParams:
    near_zero: float = 0.005
    """Correction below `near_zero x scale` counts as no correction at all."""
    collapse_share: float = 0.95
    """Share of steps with no correction that makes a collapse finding."""
    large: float = 0.1
    """Correction above `large x scale` counts as large."""
    stretch: int = 20
    """Consecutive large steps that make a stretch."""
    stretch_share: float = 0.3
    """Share of steps inside such stretches that makes a no-memory finding."""
    trend_window: int = 4
    """Checkpoints in a row whose median correction must rise each time."""
    trend_rise: float = 1.25
    """... and end at least this factor above where the window started."""


@dataclass(frozen=True)
class Finding:
    kind: str  # "collapse" | "no_memory" | "rising_trend"
    checkpoint: int  # the checkpoint it is about (for a trend: the last one of the window)
    summary: str
    evidence: dict[str, float | int | list[float] | list[int]] = field(default_factory=dict)
    examples: tuple[tuple[int, int, int], ...] = ()
    """(trace index, t0, t1) of stretches that show it, longest first."""


@dataclass(frozen=True)
class CheckpointColumn:
    """One checkpoint's correction over its traces, concatenated (see `review.segments`)."""

    checkpoint: int
    step: int | None
    values: np.ndarray
    offsets: np.ndarray | None = None
    scale: float = 1.0


def correction_scale(config: Mapping[str, Any]) -> float | None:
    """The largest L1 correction a categorical latent allows: 2 per group."""
    groups, classes = config.get("groups"), config.get("classes")
    if isinstance(groups, int) and isinstance(classes, int) and classes > 1:
        return 2.0 * groups
    return None


def checkpoint_findings(
    col: CheckpointColumn, params: DiagnosticParams = DiagnosticParams()
) -> list[Finding]:
    values = np.asarray(col.values, dtype=np.float64)
    offsets = single(values) if col.offsets is None else np.asarray(col.offsets)
    finite = values[np.isfinite(values)]
    if not len(finite):
        return []
    findings = []
    zero_level = params.near_zero * col.scale
    zero_share = float((finite < zero_level).mean())
    median = float(np.median(finite))
    if zero_share >= params.collapse_share:
        findings.append(
            Finding(
                kind="collapse",
                checkpoint=col.checkpoint,
                summary=(
                    f"correction is near zero on {zero_share:.0%} of steps: the posterior "
                    "follows the prior and the encoder is being ignored"
                ),
                evidence={
                    "share_near_zero": zero_share,
                    "near_zero_level": zero_level,
                    "median": median,
                    "p99": float(np.percentile(finite, 99)),
                    "steps": len(finite),
                },
            )
        )
    large_level = params.large * col.scale
    with np.errstate(invalid="ignore"):
        large = values > large_level
    trace, start, end = runs(large, offsets, params.stretch, 0)
    covered = int((end - start + 1).sum())
    share = covered / len(finite)
    if share >= params.stretch_share:
        order = np.argsort(-(end - start), kind="stable")[:5]
        findings.append(
            Finding(
                kind="no_memory",
                checkpoint=col.checkpoint,
                summary=(
                    f"correction stays large for {params.stretch}+ steps on {share:.0%} of steps: "
                    "the dynamics carry little memory between frames"
                ),
                evidence={
                    "share_in_stretches": share,
                    "large_level": large_level,
                    "stretches": len(start),
                    "longest": int((end - start + 1).max()),
                    "median": median,
                },
                examples=tuple(
                    (
                        int(trace[i]),
                        int(start[i] - offsets[trace[i]]),
                        int(end[i] - offsets[trace[i]]),
                    )
                    for i in order
                ),
            )
        )
    return findings


def trend_findings(
    cols: Sequence[CheckpointColumn],
    collapsed: set[int],
    params: DiagnosticParams = DiagnosticParams(),
) -> list[Finding]:
    """A rising median correction over the last `trend_window` checkpoints (in step order),
    leaving out collapsed checkpoints so the climb out of collapse is not an alarm."""
    ordered = sorted(
        (c for c in cols if c.checkpoint not in collapsed),
        key=lambda c: (c.step is None, c.step or 0, c.checkpoint),
    )
    medians = []
    for c in ordered:
        finite = c.values[np.isfinite(c.values)]
        medians.append(float(np.median(finite)) if len(finite) else float("nan"))
    w = params.trend_window
    if len(ordered) < w:
        return []
    tail = np.asarray(medians[-w:])
    if not np.all(np.isfinite(tail)) or not np.all(np.diff(tail) > 0):
        return []
    if tail[-1] < params.trend_rise * tail[0]:
        return []
    last = ordered[-1]
    return [
        Finding(
            kind="rising_trend",
            checkpoint=last.checkpoint,
            summary=(
                f"median correction rose {tail[-1] / tail[0]:.2f}x over the last {w} checkpoints: "
                "an early warning that often precedes a collapse of the return"
            ),
            evidence={
                "checkpoints": [c.checkpoint for c in ordered[-w:]],
                "steps": [int(c.step) if c.step is not None else -1 for c in ordered[-w:]],
                "medians": [float(m) for m in tail],
            },
        )
    ]


def run_findings(
    cols: Sequence[CheckpointColumn], params: DiagnosticParams = DiagnosticParams()
) -> list[Finding]:
    """Every finding of a run's checkpoints."""
    findings = [f for c in cols for f in checkpoint_findings(c, params)]
    collapsed = {f.checkpoint for f in findings if f.kind == "collapse"}
    return findings + trend_findings(cols, collapsed, params)
