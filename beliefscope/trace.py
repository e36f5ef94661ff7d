"""Per-step belief metrics: the names every layer agrees on (store columns, API, exports).

`TraceData` is the value ingest computes for one (checkpoint, episode, probe) and the store
writes in one transaction. Columns are numpy arrays of length T; NaN/inf are kept as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    "belief_jump": "distance (m) between the object positions the decode probe reads from the "
    "prior and from the posterior features: how far this frame moved the belief of where the "
    "object is (decode traces only)",
}
"""Column name -> meaning. Order is the column order in stores and exports."""


@dataclass
class TraceData:
    """Everything stored per step for one trace."""

    metrics: dict[str, np.ndarray]  # name in METRICS -> (T,) float
    kl_groups: np.ndarray  # (T, G) float, per-latent-group KL for heat maps
    post_probs: np.ndarray | None = None  # (T, g, K) for the first g groups (categorical only)
    prior_probs: np.ndarray | None = None  # (T, g, K)
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    """Probe-specific per-step series (e.g. decoded object position), stored beside metrics."""

    def __post_init__(self) -> None:
        unknown = set(self.metrics) - set(METRICS)
        assert not unknown, f"unknown metrics {unknown}"
        lengths = {len(v) for v in self.metrics.values()} | {len(self.kl_groups)}
        assert len(lengths) == 1, f"columns of different lengths: {lengths}"

    @property
    def length(self) -> int:
        return len(self.kl_groups)
