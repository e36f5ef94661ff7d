"""Decompression bombs and giant arrays: small files that declare (or inflate to) far more
than they hold are refused before anything is allocated, with an error naming the file, and
the attempt's peak memory is measured in a fresh process (under 200 MB each).

Each attempt runs in its own interpreter so its peak resident size (`ru_maxrss`) is its own:
the growth from just before the attempt to its end is what the file cost.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

LIMIT_MB = 200
GIB = 2**30

ATTEMPT = """
import json, resource, sys
from pathlib import Path
from beliefscope.errors import BadInputError
kind, path = sys.argv[1], Path(sys.argv[2])
if kind == "npz":
    from beliefscope.replay.npz import NpzFile
    def attempt():
        with NpzFile(path) as npz:
            return npz.array("image").shape
elif kind == "tensordict":
    from beliefscope.replay.torchrl_rollouts import FORMAT
    def attempt():
        errors = []
        refs = FORMAT.list(path.parent, on_error=errors.append)
        if errors:
            raise errors[0]
        return [FORMAT.load(r).length for r in refs]
elif kind == "safetensors":
    from beliefscope.rssm.checkpoint import load_checkpoint
    def attempt():
        return type(load_checkpoint(path)).__name__
else:
    from beliefscope.rssm.families import safe_pickle
    def attempt():
        return type(safe_pickle.load(path)).__name__
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    outcome = {"read": str(attempt())}
except BadInputError as err:
    outcome = {"refused": str(err)}
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({**outcome, "grew_mb": (after - before) / 1024}))
"""


def attempt(kind: str, path: Path) -> dict:
    """Open `path` as `kind` in a fresh interpreter; what happened and its memory growth."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run(
        [sys.executable, "-c", ATTEMPT, kind, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}".encode()
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def _zeros_member(archive: zipfile.ZipFile, name: str, header: bytes, zeros: int) -> None:
    """A deflated member: `header`, then `zeros` zero bytes, streamed (never in memory)."""
    chunk = bytes(1 << 20)
    with archive.open(name, "w", force_zip64=True) as member:
        member.write(header)
        for _ in range(zeros // len(chunk)):
            member.write(chunk)
        member.write(bytes(zeros % len(chunk)))


def test_an_npz_that_inflates_a_thousandfold_is_refused(tmp_path: Path) -> None:
    """1 MB on disk, 1 GiB of frames when inflated: a valid archive (every header tells the
    truth, deflate really does 1000x on zeros), which the old per-member check let through."""
    path = tmp_path / "replay" / "bomb-1.npz"
    path.parent.mkdir()
    n = GIB // (64 * 64 * 3)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        _zeros_member(archive, "image.npy", _npy_header("|u1", (n, 64, 64, 3)), n * 64 * 64 * 3)
    assert path.stat().st_size < 2 * 2**20
    result = attempt("npz", path)
    assert "refused" in result, result
    assert str(path) in result["refused"] and "over the limit" in result["refused"]
    assert "BELIEFSCOPE_MAX_INFLATE_RATIO" in result["refused"]
    assert result["grew_mb"] < LIMIT_MB, result


def test_the_absolute_inflation_limit_is_a_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from beliefscope.config import get_settings
    from beliefscope.errors import BadInputError
    from beliefscope.replay.npz import NpzFile

    frames = np.random.default_rng(0).integers(0, 255, (64, 64, 64, 3), dtype=np.uint8)
    path = tmp_path / "ep.npz"
    np.savez_compressed(path, image=frames)  # 786 kB of noise: no inflation to speak of
    with NpzFile(path) as npz:
        assert npz.array("image").shape == frames.shape
    monkeypatch.setenv("BELIEFSCOPE_MAX_INFLATED_BYTES", str(500_000))
    get_settings.cache_clear()
    try:
        with pytest.raises(BadInputError, match=r"ep\.npz: .*over the limit of 500,000"):
            NpzFile(path)
    finally:
        monkeypatch.delenv("BELIEFSCOPE_MAX_INFLATED_BYTES")
        get_settings.cache_clear()


def test_a_saved_tensordict_whose_pickle_inflates_is_refused(tmp_path: Path) -> None:
    """torch.load would inflate a deflated `data.pkl` whole; the format refuses it first."""
    path = tmp_path / "replay" / "rollout.pt"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("rollout/version", "3\n")
        _zeros_member(archive, "rollout/data.pkl", b"\x80\x02", GIB)
    result = attempt("tensordict", path)
    assert "refused" in result, result
    assert str(path) in result["refused"] and "inflate" in result["refused"]
    assert result["grew_mb"] < LIMIT_MB, result


def test_a_safetensors_header_declaring_a_huge_tensor_is_refused(tmp_path: Path) -> None:
    header = json.dumps(
        {
            "__metadata__": {"beliefscope": "{}"},
            "rssm.w": {
                "dtype": "F32",
                "shape": [100_000, 100_000],
                "data_offsets": [0, 4 * 10**10],
            },
        }
    ).encode()
    path = tmp_path / "ckpt-00000001.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(64))
    result = attempt("safetensors", path)
    assert "refused" in result, result
    assert str(path) in result["refused"]
    assert result["grew_mb"] < LIMIT_MB, result


class _GiantArray:
    """Pickles as numpy's own array reconstruction, asked for 8 GiB up front (numpy's pickles
    ask for an empty array and fill it from the file's bytes)."""

    def __reduce__(self):  # noqa: ANN204
        reconstruct, _args, _state = np.zeros(1).__reduce__()  # type: ignore[misc]
        return reconstruct, (np.ndarray, (2**33,), b"b")


def test_a_pickle_declaring_a_giant_array_is_refused(tmp_path: Path) -> None:
    """120 bytes that handed back an 8 GiB array (uninitialised: what touches it pays)."""
    path = tmp_path / "agent.pkl"
    path.write_bytes(pickle.dumps({"params": _GiantArray()}, protocol=2))
    assert path.stat().st_size < 200
    result = attempt("pickle", path)
    assert "refused" in result, result
    assert str(path) in result["refused"] and "(8589934592,)" in result["refused"]
    assert result["grew_mb"] < LIMIT_MB, result
    ok = tmp_path / "ok.pkl"
    ok.write_bytes(pickle.dumps({"w": np.arange(6.0).reshape(2, 3)}, protocol=2))
    assert attempt("pickle", ok)["read"] == "dict"  # numpy's own pickles still load
