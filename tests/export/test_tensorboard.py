"""`beliefscope export tensorboard`: TensorBoard's own reader reads the event files back with
the stored values (float32, as TensorBoard keeps scalars), NaN and +/-inf included."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from beliefscope.cli import main
from beliefscope.store.engine import Store
from tests.export.conftest import ABSENT, Written


def load(directory: Path) -> EventAccumulator:
    acc = EventAccumulator(str(directory), size_guidance={"scalars": 0})  # 0: keep every point
    acc.Reload()
    return acc


def test_event_files_per_checkpoint_and_episode(
    tmp_path: Path, store: Store, seeded: Written
) -> None:
    out = tmp_path / "tb"
    assert main(["export", "tensorboard", "--store", store.url, "--out", str(out)]) == 0
    dirs = sorted(p.parent for p in out.rglob("events.out.tfevents.*"))
    pairs = {(run, step, episode) for run, step, _, episode, *_ in seeded.traces.values()}
    assert len(dirs) == len(pairs) == 6
    for trace_id, (run, step, _, episode, key, variant, metrics) in seeded.traces.items():
        safe_key = key.replace(":", "_").replace("/", "_")
        directory = out / run / f"step-{step}" / f"episode-{episode}-{safe_key}"
        acc = load(directory)
        tags = set(acc.Tags()["scalars"])
        assert f"{variant}/{ABSENT}" not in tags  # a metric the trace lacks is no series
        for name, values in metrics.items():
            events = acc.Scalars(f"{variant}/{name}")
            assert [e.step for e in events] == list(range(len(values))), (trace_id, name)
            got = np.array([e.value for e in events], np.float32)
            np.testing.assert_array_equal(got, values.astype(np.float32), err_msg=name)
    any_dir = dirs[0]
    scalars = load(any_dir).Scalars("filter/correction")
    assert np.isposinf(scalars[2].value) and np.isneginf(scalars[3].value)
    assert np.isnan(load(any_dir).Scalars("filter/kl")[1].value)


def test_filters_limit_the_event_files(tmp_path: Path, store: Store, seeded: Written) -> None:
    out = tmp_path / "tb"
    args = ["--run", "alpha", "--checkpoint", "200", "--variant", "openloop:3"]
    assert main(["export", "tensorboard", "--store", store.url, "--out", str(out), *args]) == 0
    dirs = sorted(p.parent for p in out.rglob("events.out.tfevents.*"))
    assert [d.relative_to(out).parts[:2] for d in dirs] == [("alpha", "step-200")] * 2
    for directory in dirs:
        assert {t.split("/")[0] for t in load(directory).Tags()["scalars"]} == {"openloop:3"}


def test_without_the_extra_the_export_says_how_to_get_it(
    tmp_path: Path, store: Store, seeded: Written, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    for name in [m for m in sys.modules if m == "tensorboard" or m.startswith("tensorboard.")]:
        monkeypatch.setitem(sys.modules, name, None)  # as if the extra were not installed
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    out = tmp_path / "tb"
    assert main(["export", "tensorboard", "--store", store.url, "--out", str(out)]) == 2
    assert "pip install 'beliefscope[tensorboard]'" in capsys.readouterr().err
    assert not out.exists()
