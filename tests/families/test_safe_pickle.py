"""The restricted unpickler: arrays and containers in, every other global refused."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from beliefscope.errors import BadInputError
from beliefscope.rssm.families import safe_pickle


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def test_arrays_and_containers_round_trip(tmp_path: Path) -> None:
    value = {
        "params": {"a/kernel": np.arange(6, dtype=np.float32).reshape(2, 3)},
        "n": (1, 2.5, "x"),
    }
    path = tmp_path / "ok.pkl"
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        path.write_bytes(pickle.dumps(value, protocol=protocol))
        loaded = safe_pickle.load(path)
        assert np.array_equal(loaded["params"]["a/kernel"], value["params"]["a/kernel"])
        assert loaded["n"] == (1, 2.5, "x")
    path.write_bytes(pickle.dumps(np.int32(7)))
    assert safe_pickle.load(path) == 7


def test_a_global_that_runs_code_is_refused_before_it_runs(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "agent.pkl"
    path.write_bytes(pickle.dumps({"params": {"x": _Exploit(marker)}}))
    with pytest.raises(
        BadInputError, match=r"global (os|posix)\.system, which is not allowed"
    ) as err:
        safe_pickle.load(path)
    assert err.value.path == str(path)
    assert not marker.exists()


def test_other_classes_and_corrupt_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps(Path("/etc")))
    with pytest.raises(BadInputError, match=r"pathlib.*PosixPath|pathlib\._local"):
        safe_pickle.load(path)
    path.write_bytes(pickle.dumps({"a": 1})[:-3])
    with pytest.raises(BadInputError, match="not a readable pickle"):
        safe_pickle.load(path)
