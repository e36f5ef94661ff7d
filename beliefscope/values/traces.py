"""Runs, checkpoints, episodes and traces: the per-step belief metrics every layer names alike
(store columns, API, exports), what ingest computes and what the read layer returns.

`TraceData` is the value ingest computes for one (checkpoint, episode, trace variant) and the
store
writes in one transaction; its columns are numpy arrays of length T. Read values are frozen.
NaN and +/-inf are kept as such everywhere. A metric the model cannot produce (e.g. no reward
head) is absent from `TraceSeries.series` and named in `TraceSeries.absent`, so "not available"
is never confused with NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

METRICS: dict[str, str] = {
    "kl": "raw KL(posterior || prior), summed over latent groups",
    "kl_dyn": "dyn term: max(KL(sg(post) || prior), free_nats)",
    "kl_rep": "rep term: max(KL(post || sg(prior)), free_nats)",
    "correction": "L1 between posterior and prior expectations (class probs or means)",
    "prior_entropy": "entropy of the prior, summed over groups",
    "post_entropy": "entropy of the posterior, summed over groups",
    "recon_error": "MSE of the posterior decode vs the frame (pixels in [0, 1])",
    "pred_error": "MSE of the prior's one-step decode vs the frame",
    "reward_pred": "reward predicted from the posterior features",
    "reward": "reward actually received on arriving at this step",
    "cont_pred": "continuation probability predicted from the posterior features",
    "cont": "actual continuation (1 - is_terminal)",
    "deter_norm": "|h_t| (L2)",
    "deter_delta": "|h_t - h_{t-1}| (L2), NaN at resets",
    "openloop_error": "MSE of the decode after imagining k steps from the posterior at t-k",
    "reward_error": "|reward - reward predicted from the prior features|: how much the reward "
    "surprised the dynamics before the frame arrived; where the reward depends on a hidden "
    "object's position, it rises where the belief of that position was wrong",
    "belief_jump": "distance (m) between the object positions the decode probe reads from the "
    "prior and from the posterior features: how far this frame moved the belief of where the "
    "object is (decode traces only)",
}
"""Column name -> meaning. Order is the column order in stores and exports."""

BELIEF_VARIANT = "decode"
"""The trace variant `beliefscope probe decode` stores: the filter's metrics plus `belief_jump`,
and arrays `extra:decoded_pos` (T, 2), `extra:futures_mean` (T, H, 2), `extra:futures_spread`
(T, H) of the decoded belief of the hidden object's position."""


@dataclass
class TraceData:
    """Everything stored per step for one trace."""

    metrics: dict[str, np.ndarray]  # name in METRICS -> (T,) float
    kl_groups: np.ndarray  # (T, G) float, per-latent-group KL for heat maps
    post_probs: np.ndarray | None = None  # (T, g, K) for the first g groups (categorical only)
    prior_probs: np.ndarray | None = None  # (T, g, K)
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    """Per-step series of a variant or a probe (e.g. the decoded object position), stored beside
    the metrics."""

    def __post_init__(self) -> None:
        unknown = set(self.metrics) - set(METRICS)
        assert not unknown, f"unknown metrics {unknown}"
        lengths = {len(v) for v in self.metrics.values()} | {len(self.kl_groups)}
        assert len(lengths) == 1, f"columns of different lengths: {lengths}"

    @property
    def length(self) -> int:
        return len(self.kl_groups)


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
class RunDeleted:
    """What deleting a run removed."""

    name: str
    checkpoints: int
    episodes: int
    traces: int


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
    variant: str  # "filter", "openloop:5", "dropout:10-30", ... (the `probe` column)
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
