"""Noise estimates for the audit's comparisons: blocks of consecutive steps as the unit.

Per-step errors are correlated in time, so a standard error over steps would be far too small;
blocks of `BLOCK` steps (never spanning two episodes) are close to independent. The same blocks
work for one long episode or many short ones, and they are what a re-run of the audit on other
episodes would move a mean by ("run-to-run noise").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 10
BOOTSTRAP = 400
Z = 4.0
"""A difference counts when it exceeds Z standard errors (and a minimum effect size)."""


def block_ids(mask: np.ndarray) -> np.ndarray:
    """(B, T) block index of every masked-in step, -1 elsewhere."""
    rows, steps = mask.shape
    per_row = -(-steps // BLOCK)
    ids = np.arange(rows)[:, None] * per_row + np.arange(steps)[None, :] // BLOCK
    return np.where(mask, ids, -1)


def block_sums(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per non-empty block: the sum of `values` (..., B, T) over its masked steps (..., N), and
    its step count (N,)."""
    ids = block_ids(mask)
    used, inverse = np.unique(ids[mask], return_inverse=True)
    counts = np.bincount(inverse, minlength=len(used)).astype(np.float64)
    flat = np.asarray(values, np.float64)[..., mask]  # (..., steps)
    rows = flat.reshape(-1, flat.shape[-1])  # (M, steps)
    sums = np.stack([np.bincount(inverse, weights=row, minlength=len(used)) for row in rows])
    return sums.reshape(*flat.shape[:-1], len(used)), counts


@dataclass(frozen=True)
class Estimate:
    mean: float
    se: float  # standard error over blocks of steps
    blocks: int

    def exceeds(self, floor: float = 0.0) -> bool:
        """True when the mean is above both Z standard errors and `floor`."""
        return self.mean > max(Z * self.se, floor)


def mean_se(values: np.ndarray, mask: np.ndarray) -> Estimate:
    """Mean of `values` (B, T) over the masked steps, with its standard error over blocks."""
    sums, counts = block_sums(values, mask)
    if not len(counts):
        return Estimate(float("nan"), float("nan"), 0)
    means = sums / counts
    mean = float(sums.sum() / counts.sum())
    if len(counts) < 2:
        return Estimate(mean, float("inf"), len(counts))
    # weighted by block size: a ratio estimator's standard error
    resid = (means - mean) * counts / counts.mean()
    return Estimate(mean, float(resid.std(ddof=1) / np.sqrt(len(counts))), len(counts))


@dataclass(frozen=True)
class Vertex:
    """Where a parabola fitted to error vs lag has its minimum."""

    lag: float  # NaN when the fit opens downwards (no minimum)
    se: float  # bootstrap standard error over blocks of steps
    curvature: float


def _vertex(lags: np.ndarray, errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertex and curvature of least-squares parabolas, errors (L, N) -> (N,), (N,)."""
    a, b, _ = np.polyfit(lags, errors, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > 0, -b / (2 * a), np.nan), a


def parabola_vertex(
    lags: np.ndarray, sq_errors: np.ndarray, mask: np.ndarray, seed: int = 0
) -> Vertex:
    """Fit `MSE(lag)` (sq_errors (L, B, T), the squared error at each lag) with a parabola;
    the standard error of its vertex comes from resampling blocks of steps."""
    sums, counts = block_sums(sq_errors, mask)  # (L, N), (N,)
    lag, curvature = _vertex(lags, (sums.sum(1) / counts.sum())[:, None])
    draws = np.random.default_rng(seed).integers(0, len(counts), (BOOTSTRAP, len(counts)))
    mse = sums[:, draws].sum(-1) / counts[draws].sum(-1)  # (L, R)
    boot, _ = _vertex(lags, mse)
    finite = boot[np.isfinite(boot)]
    # a resample without a minimum is as uncertain as it gets
    se = float(finite.std()) if len(finite) > 0.9 * BOOTSTRAP else float("inf")
    return Vertex(float(lag[0]), se, float(curvature[0]))
