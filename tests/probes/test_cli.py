"""`beliefscope probe ...` end to end: world episodes, a briefly trained model, a real store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from beliefscope.cli import main
from beliefscope.store import review_store as rs
from beliefscope.store.engine import open_store
from tests.builders import make_run, make_world


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("probe")
    world = make_world(root / "run" / "replay", episodes=4, length=30, seed=6)
    make_run(root / "run", world, steps=2, save_every=2)
    return root / "run"


def test_probe_dropout_openloop_and_decode(run_dir: Path, sqlite_url: str, capsys) -> None:
    base = [str(run_dir), "--store", sqlite_url, "--run-name", "r", "--threads", "1"]
    assert main(["probe", "dropout", *base, "--window", "5-15", "--control"]) == 0
    out = capsys.readouterr().out
    assert "dropout:5-15" in out and "ablated memory" in out
    store = open_store(sqlite_url)
    (ckpt,) = store.queries.list_checkpoints(run_id=store.queries.find_run(name="r").id).items
    probes = {t.probe for t in store.queries.list_traces(checkpoint_id=ckpt.id).items}
    assert probes == {"filter", "dropout:5-15"}
    summary = rs.get_probe_summary(store, checkpoint_id=ckpt.id, probe="dropout:5-15")
    assert summary["episodes"] == 4 and summary["gap_steps"] == 10
    assert np.isfinite(summary["resume_correction"]) and "control" in summary

    assert main(["probe", "openloop", *base, "--horizon", "4", "--stride", "3"]) == 0
    curve = rs.get_probe_summary(store, checkpoint_id=ckpt.id, probe="openloop")
    assert curve["horizon"] == [1, 2, 3, 4] and min(curve["count"]) > 0

    assert main(["probe", "decode", *base, "--samples", "3", "--future", "4"]) == 0
    decode = rs.get_probe_summary(store, checkpoint_id=ckpt.id, probe="decode")
    assert len(decode["train_episodes"]) == 2 and np.isfinite(decode["visible_error"])
    trace = store.queries.list_traces(checkpoint_id=ckpt.id, probe="decode").items[0]
    assert {"extra:decoded_pos", "extra:futures_mean", "extra:futures_spread"} <= set(trace.arrays)
    pos = store.queries.read_array(trace_id=trace.id, name="extra:decoded_pos")
    assert pos.values.shape == (30, 2)

    assert main(["probe", "dropout", *base, "--window", "9-3"]) == 2
    assert "A < B" in capsys.readouterr().err
    store.close()
