"""NaN, +inf, -inf and "not available" survive the store, the same on both backends."""

from __future__ import annotations

import numpy as np

from tests.store.conftest import Seeded, make_trace


def test_nonfinite_and_missing_metrics_round_trip(seeded: Seeded) -> None:
    data = make_trace(6, without=("reward_pred", "cont_pred"))  # a model without heads
    data.metrics["kl"][:] = [0.5, np.nan, np.inf, -np.inf, 0.0, 1e300]
    data.metrics["correction"][:] = np.nan
    data.kl_groups[1] = [np.nan, np.inf, -np.inf, 0, 1, 2, 3, 70000.0]  # float16 max is 65504
    trace_id = seeded.store.writer.write_trace(
        seeded.checkpoint_id, seeded.episode_id, "filter", "mode", data
    )
    assert trace_id is not None
    q = seeded.store.queries
    got = q.read_trace(trace_id=trace_id)
    assert set(got.absent) == {"reward_pred", "cont_pred"}
    assert set(got.series) == set(data.metrics)
    for name, values in data.metrics.items():
        np.testing.assert_array_equal(got.series[name].values, values, err_msg=name)
        np.testing.assert_array_equal(got.series[name].t, np.arange(6))
    info = q.get_trace(trace_id=trace_id)
    assert "reward_pred" not in info.metrics and "kl" in info.metrics
    assert info.kl_max == 1e300 and info.correction_mean is None  # summaries over finite steps
    groups = q.read_array(trace_id=trace_id, name="kl_groups").values
    assert np.isnan(groups[1, 0]) and groups[1, 1] == np.inf and groups[1, 2] == -np.inf
    assert groups[1, 7] == np.inf  # float16 overflow shows as inf, never as a clipped value
    summary = q.checkpoint_summary(checkpoint_id=seeded.checkpoint_id)
    assert (summary.kl.n_finite, summary.kl.n_nonfinite) == (3, 3)
    assert (summary.correction.n_finite, summary.correction.n_nonfinite) == (0, 6)
    assert summary.correction.mean is None


def test_only_requested_metrics_and_window(seeded: Seeded) -> None:
    data = make_trace(100, without=("reward_pred",))
    trace_id = seeded.store.writer.write_trace(
        seeded.checkpoint_id, seeded.episode_id, "filter", "mode", data
    )
    assert trace_id is not None
    got = seeded.store.queries.read_trace(
        trace_id=trace_id, metrics=["kl", "reward_pred"], t0=10, t1=19
    )
    assert list(got.series) == ["kl"] and got.absent == ("reward_pred",)
    np.testing.assert_array_equal(got.series["kl"].t, np.arange(10, 20))
    np.testing.assert_array_equal(got.series["kl"].values, data.metrics["kl"][10:20])
    assert got.length == 100 and not got.downsampled
