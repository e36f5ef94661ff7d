"""Domain values the read layer returns: frozen dataclasses, never ORM rows.

Series are numpy arrays; NaN and +/-inf are kept as such. A metric the model cannot produce
(e.g. no reward head) is absent from `TraceSeries.series` and named in `TraceSeries.absent`,
so "not available" is never confused with NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: `items[i]` is result number `offset + i` of `total`."""

    items: tuple[T, ...]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class RunInfo:
    id: int
    name: str
    logdir: str
    format: str | None
    family: str | None
    replay_dirs: list[str]
    created: datetime
    n_checkpoints: int
    n_episodes: int
    n_traces: int
    latest_job_state: str | None  # state of the run's newest job, None when it has none


@dataclass(frozen=True)
class CheckpointInfo:
    id: int
    run_id: int
    step: int | None
    content_hash: str
    format: str
    family: str | None
    config: dict[str, Any]
    source_path: str
    created: datetime
    n_traces: int


@dataclass(frozen=True)
class EpisodeInfo:
    id: int
    run_id: int
    key: str
    format: str
    source_path: str
    length: int
    episode_return: float | None
    has_truth: bool
    truth_summary: dict[str, Any]
    locator: dict[str, Any]
    created: datetime
    fingerprint: str | None = None


@dataclass(frozen=True)
class TraceInfo:
    id: int
    checkpoint_id: int
    episode_id: int
    probe: str  # "filter", "openloop:5", "dropout:10-30", ...
    posterior: str  # "mode" or "sample:SEED"
    length: int
    metrics: tuple[str, ...]  # metrics computed for this trace, in STEP_METRICS order
    arrays: tuple[str, ...]  # stored arrays: "kl_groups", "post_probs", "extra:<name>", ...
    kl_mean: float | None  # over finite steps; None when no step is finite
    kl_max: float | None
    correction_mean: float | None
    correction_max: float | None
    created: datetime


@dataclass(frozen=True, eq=False)
class Series:
    """One metric over time; `t` and `values` have equal length, `t` increasing."""

    t: np.ndarray  # (n,) int64 step index
    values: np.ndarray  # (n,) float64


@dataclass(frozen=True, eq=False)
class TraceSeries:
    trace_id: int
    length: int  # steps in the whole trace
    series: dict[str, Series]  # metric -> series; different t per metric when downsampled
    absent: tuple[str, ...]  # requested metrics this trace does not have
    downsampled: bool


@dataclass(frozen=True, eq=False)
class TraceArray:
    """A per-step array (e.g. per-group KL); when downsampled, row i is the max over steps
    `t[i]` .. `t[i + 1] - 1` (the last row up to the end of the window)."""

    trace_id: int
    name: str
    t: np.ndarray  # (n,) int64 first step of each row
    values: np.ndarray  # (n, ...) the stored dtype (float16 for KL and probabilities)
    downsampled: bool


@dataclass(frozen=True)
class Stats:
    """Distribution of one metric over the finite steps of many traces."""

    mean: float | None
    median: float | None
    p95: float | None
    n_finite: int
    n_nonfinite: int  # NaN and +/-inf steps, counted apart so they are never hidden


@dataclass(frozen=True)
class CheckpointSummary:
    checkpoint_id: int
    step: int | None
    n_traces: int  # filter traces (posterior mode) the stats cover
    kl: Stats
    correction: Stats


@dataclass(frozen=True)
class JobErrorInfo:
    id: int
    job_id: int
    unit: str
    file: str | None
    reason: str
    created: datetime


@dataclass(frozen=True)
class JobInfo:
    id: int
    kind: str
    run_id: int | None
    state: str  # queued, running, done, failed
    args: dict[str, Any]
    done: int
    total: int
    message: str | None
    created: datetime
    started: datetime | None
    finished: datetime | None
    heartbeat: datetime | None
    n_errors: int
    errors: tuple[JobErrorInfo, ...] = field(default=())  # filled by get_job only
