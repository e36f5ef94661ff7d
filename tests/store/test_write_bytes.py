"""What `write_trace` stores reads back bit for bit on both backends: step metrics with NaN and
infinities, float16 arrays, extras in their own dtype (little-endian), zero-width arrays, traces
without class probabilities and traces of no steps; its rows look like SQLAlchemy's."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from beliefscope.store.tables import Trace, utcnow
from beliefscope.values.traces import TraceData
from tests.store.conftest import Seeded, make_trace


def _odd_trace(length: int) -> TraceData:
    data = make_trace(length, seed=3, without=("reward_pred",))
    data.post_probs = data.prior_probs = None
    if length:
        data.metrics["kl"][::3] = np.nan
        data.metrics["kl_dyn"][-1] = np.inf
        data.metrics["correction"][:] = np.nan
        data.metrics["deter_delta"][0] = -np.inf
        data.kl_groups[0] = [np.nan, np.inf, -np.inf, 7e4, -7e4, 1e-8, 0.1, -0.0]
    data.extra = {
        "xy": np.random.default_rng(1).normal(size=(length, 2)).astype(np.float32),
        "none": np.zeros((length, 0)),
        "count": np.arange(length, dtype=">i4"),  # big-endian in, little-endian stored
    }
    return data


@pytest.mark.parametrize("length", [0, 1, 37])
def test_stored_values_and_bytes_read_back_exactly(seeded: Seeded, length: int) -> None:
    data = _odd_trace(length)
    trace_id = seeded.store.writer.write_trace(
        seeded.checkpoint_id, seeded.episode_id, "filter", "mode", data
    )
    assert trace_id is not None
    q = seeded.store.queries
    got = q.read_trace(trace_id=trace_id)
    assert got.length == length and got.absent == ("reward_pred",)
    for name, values in data.metrics.items():
        stored = got.series[name].values
        assert stored.tobytes() == values.astype("<f8").tobytes(), name  # NaN bits included
    info = q.get_trace(trace_id=trace_id)
    assert info.arrays == ("extra:count", "extra:none", "extra:xy", "kl_groups")
    with np.errstate(over="ignore"):  # 7e4 is beyond float16: stored as inf
        kl_groups = np.asarray(data.kl_groups, dtype="<f2")
    expected = {
        "kl_groups": kl_groups,
        **{f"extra:{k}": v.astype(v.dtype.newbyteorder("<")) for k, v in data.extra.items()},
    }
    for name, want in expected.items():
        array = q.read_array(trace_id=trace_id, name=name).values
        assert (array.dtype.str, array.shape) == (want.dtype.str, want.shape), name
        assert array.tobytes() == want.tobytes(), name


def test_trace_rows_carry_sqlalchemys_timestamps(seeded: Seeded) -> None:
    """The trace row goes through the driver, not SQLAlchemy: its `created` must still be
    stored as SQLAlchemy stores timestamps (on SQLite, its text format) and compare with them."""
    before = utcnow()
    trace_id = seeded.store.writer.write_trace(
        seeded.checkpoint_id, seeded.episode_id, "filter", "mode", make_trace(5)
    )
    after = utcnow()
    with seeded.store.connect() as conn:
        found = conn.execute(
            sa.select(Trace.id).where(Trace.created >= before, Trace.created <= after)
        ).scalar()
        stored, by_sqlalchemy = conn.exec_driver_sql(
            "SELECT t.created, e.created FROM traces t, episodes e"
        ).one()
    assert found == trace_id
    assert type(stored) is type(by_sqlalchemy)
    if seeded.store.backend == "sqlite":  # SQLAlchemy's text, not sqlite3's isoformat
        assert len(stored) == len(by_sqlalchemy) and "+" not in stored
    created = seeded.store.queries.get_trace(trace_id=trace_id).created
    assert before <= created <= after


def test_float32_arrays_get_numpys_float16_bits(seeded: Seeded) -> None:
    """Ingest hands float32 arrays: the stored bits must be the IEEE cast of the same values
    (numpy's), at every edge of float16 (overflow, subnormals, ties to even, signed zero, NaN
    and infinities), whichever way the writer casts."""
    edges = np.array(
        [np.nan, -np.nan, np.inf, -np.inf, 65504, 65519, 65520, -7e4, 6.1e-5, 5.96e-8, 2.9e-8,
         3e-8, 1e-9, -0.0, 0.0, 1 + 2**-11, 1 + 3 * 2**-11, 2049, 2051, -1 / 3],
        dtype=np.float32,
    )  # fmt: skip
    rng = np.random.default_rng(5)
    data = make_trace(len(edges))
    data.kl_groups = np.concatenate(
        [edges[:, None], (rng.normal(size=(len(edges), 7)) * 10.0 ** rng.integers(-9, 6, 7))],
        axis=1,
    ).astype(np.float32)
    data.post_probs = rng.random((len(edges), 2, 4), dtype=np.float32)
    trace_id = seeded.store.writer.write_trace(
        seeded.checkpoint_id, seeded.episode_id, "filter", "mode", data
    )
    assert trace_id is not None
    for name in ("kl_groups", "post_probs"):
        stored = seeded.store.queries.read_array(trace_id=trace_id, name=name).values
        with np.errstate(over="ignore"):
            want = np.asarray(getattr(data, name), dtype="<f2")
        assert stored.view("<u2").tobytes() == want.view("<u2").tobytes(), name
