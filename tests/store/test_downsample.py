from __future__ import annotations

import numpy as np
import pytest

from beliefscope.errors import BadInputError
from beliefscope.store.downsample import max_per_bucket, minmax_indices
from tests.store.conftest import Seeded, make_trace


def _noisy(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return np.arange(n), rng.normal(size=n)


def test_keeps_spikes_nan_and_both_ends() -> None:
    t, v = _noisy(100_000)
    v[31_337], v[77_001], v[50_000] = 40.0, -40.0, np.nan
    keep = minmax_indices(t, v, 500)
    assert len(keep) <= 500 and keep[0] == 0 and keep[-1] == len(t) - 1
    assert {31_337, 77_001, 50_000} <= set(keep.tolist())
    assert np.all(np.diff(keep) > 0)
    np.testing.assert_array_equal(keep, minmax_indices(t, v.copy(), 500))  # deterministic


def test_every_bucket_keeps_its_min_and_max() -> None:
    t, v = _noisy(10_002)
    keep = minmax_indices(t, v, 202)  # 100 buckets of 100 inner steps (both ends apart)
    assert len(keep) == 202
    kept = set(keep.tolist())
    for start in range(1, 10_001, 100):
        bucket = v[start : start + 100]
        assert start + int(np.argmax(bucket)) in kept
        assert start + int(np.argmin(bucket)) in kept


def test_infinities_are_extremes_and_short_series_are_untouched() -> None:
    t, v = _noisy(1000)
    v[10], v[20] = np.inf, -np.inf
    assert {10, 20} <= set(minmax_indices(t, v, 20).tolist())
    np.testing.assert_array_equal(minmax_indices(t[:8], v[:8], 20), np.arange(8))
    with pytest.raises(BadInputError, match="max_points"):
        minmax_indices(t, v, 2)


def test_buckets_follow_t_not_position() -> None:
    t = np.r_[np.arange(0, 10), np.arange(1000, 1010)]  # a gap in t
    v = np.zeros(len(t))
    v[3], v[15] = 5.0, -5.0
    kept = set(minmax_indices(t, v, 6).tolist())
    assert {0, 3, 15, 19} <= kept


def test_max_per_bucket_keeps_peaks_and_nan() -> None:
    values = np.zeros((1000, 3), dtype=np.float16)
    values[123, 1] = 9.0
    values[900, 2] = np.nan
    t, out = max_per_bucket(np.arange(1000), values, 10)
    np.testing.assert_array_equal(t, np.arange(0, 1000, 100))
    assert out.shape == (10, 3) and out[1, 1] == 9.0 and np.isnan(out[9, 2])
    assert out[0, 0] == 0.0 and not np.isnan(out[8]).any()


def test_read_trace_downsamples_through_the_store(seeded: Seeded) -> None:
    data = make_trace(5000)
    data.metrics["kl"][1234] = 1e6
    data.metrics["kl"][4321] = np.nan
    data.kl_groups[2500, 3] = 1e3
    trace_id = seeded.store.writer.write_trace(
        seeded.checkpoint_id, seeded.episode_id, "filter", "mode", data
    )
    assert trace_id is not None
    q = seeded.store.queries
    got = q.read_trace(trace_id=trace_id, max_points=100)
    assert got.downsampled
    kl = got.series["kl"]
    assert len(kl.t) <= 100 and kl.t[0] == 0 and kl.t[-1] == 4999
    assert np.nanmax(kl.values) == 1e6 and 4321 in kl.t and np.isnan(kl.values).sum() == 1
    heat = q.read_array(trace_id=trace_id, name="kl_groups", max_points=50)
    assert heat.downsampled and heat.values.shape == (50, 8)
    assert float(np.nanmax(heat.values)) == 1000.0
