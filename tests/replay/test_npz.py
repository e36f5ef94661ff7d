"""Safe lazy `.npz` access: rows equal the full arrays, hostile or broken files are refused."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from beliefscope.errors import BadInputError
from beliefscope.replay.npz import NpzFile, read_members


@pytest.fixture
def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "image": rng.integers(0, 255, (40, 8, 8, 3), dtype=np.uint8),
        "action": rng.normal(size=(40, 3)).astype(np.float32),
        "fortran": np.asfortranarray(rng.normal(size=(40, 5))),
        "big_endian": np.arange(40, dtype=">i4"),
        "flag": rng.random(40) < 0.5,
        "empty": np.zeros((0, 4), np.float32),
    }


@pytest.mark.parametrize("compressed", [False, True])
def test_rows_equal_the_full_array(
    tmp_path: Path, arrays: dict[str, np.ndarray], compressed: bool
) -> None:
    path = tmp_path / "ep.npz"
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    with NpzFile(path) as npz:
        assert sorted(npz.keys()) == sorted(arrays)
        for name, expected in arrays.items():
            member = npz.member(name)
            assert member.shape == expected.shape and member.dtype == expected.dtype
            assert member.compressed is compressed
            assert (member.file_offset is None) is compressed  # stored members are mappable
            np.testing.assert_array_equal(npz.array(name), expected)
            for t in (0, 17, len(expected) - 1)[: len(expected)]:
                np.testing.assert_array_equal(npz.row(name, t), expected[t])
            np.testing.assert_array_equal(npz.rows(name, 5, 9), expected[5:9])
        if not compressed:
            mapped = npz.memmap("image")
            assert isinstance(mapped, np.memmap)
            np.testing.assert_array_equal(mapped[3], arrays["image"][3])
        with pytest.raises(BadInputError, match="row 40 out of range"):
            npz.row("image", 40)
    assert read_members(path)["action"].shape == (40, 3)


def test_a_compressed_frame_reads_in_bounded_memory(tmp_path: Path) -> None:
    frames = np.zeros((1200, 64, 64, 3), np.uint8)  # 14.7 MB of frames, mostly constant
    frames[:, ::7] = np.arange(1200, dtype=np.uint8)[:, None, None, None]
    path = tmp_path / "long.npz"
    np.savez_compressed(path, image=frames)
    with NpzFile(path) as npz:
        tracemalloc.start()
        last = npz.row("image", 1199)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    np.testing.assert_array_equal(last, frames[1199])
    assert peak < 4 * 2**20, f"reading one frame peaked at {peak / 2**20:.1f} MB"


def _npy_member(header: str, data: bytes = b"") -> bytes:
    text = header.encode("latin1")
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_corrupt_and_truncated_files_are_rejected(tmp_path: Path) -> None:
    good = tmp_path / "good.npz"
    np.savez(good, image=np.zeros((50, 8, 8, 3), np.uint8), reward=np.zeros(50, np.float32))
    data = good.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match=r"cut\.npz: not a readable \.npz"):
        NpzFile(cut)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"definitely not a zip file" * 10)
    with pytest.raises(BadInputError, match=r"junk\.npz: not a readable \.npz"):
        NpzFile(junk)
    with pytest.raises(BadInputError, match=r"missing\.npz: cannot open"):
        NpzFile(tmp_path / "missing.npz")
    # Damage inside a compressed member is found when the rows are read.
    packed = tmp_path / "packed.npz"
    np.savez_compressed(packed, image=np.arange(200_000, dtype=np.int64))
    raw = bytearray(packed.read_bytes())
    raw[2000:2400] = bytes(400)
    packed.write_bytes(bytes(raw))
    with pytest.raises(BadInputError, match=r"packed\.npz.*'image'"), NpzFile(packed) as npz:
        npz.array("image")


def test_pickles_and_object_arrays_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "objects.npz"
    np.savez(path, image=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(BadInputError, match=r"objects\.npz: member 'image': object arrays"):
        NpzFile(path)
    # A header that is code, not a literal, is refused without being run.
    evil = _zip(
        tmp_path / "evil.npz",
        {"image.npy": _npy_member("__import__('os').system('touch pwned')")},
    )
    with pytest.raises(BadInputError, match="unreadable .npy header"):
        NpzFile(evil)
    assert not Path("pwned").exists()


def test_headers_that_lie_about_their_size_are_refused(tmp_path: Path) -> None:
    huge = _zip(
        tmp_path / "huge.npz",
        {
            "image.npy": _npy_member(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (10**12,), }"
            )
        },
    )
    with pytest.raises(BadInputError, match="unreadable .npy header"):
        NpzFile(huge)  # not even arithmetic is evaluated
    huge = _zip(
        tmp_path / "huge.npz",
        {
            "image.npy": _npy_member(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }", bytes(8)
            )
        },
    )
    with pytest.raises(BadInputError, match=r"declares float64 \(1000000000000,\) \(8000000000000"):
        NpzFile(huge)
    liar = _zip(
        tmp_path / "liar.npz",
        {
            "image.npy": _npy_member(
                "{'descr': '|u1', 'fortran_order': False, 'shape': (100000, 64, 64, 3), }",
                bytes(64 * 64 * 3),
            )
        },
    )
    with pytest.raises(BadInputError, match=r"liar\.npz: member 'image': header declares uint8"):
        NpzFile(liar)
    bad_dtype = _zip(
        tmp_path / "dtype.npz",
        {
            "image.npy": _npy_member(
                "{'descr': 'not-a-dtype', 'fortran_order': False, 'shape': (1,), }"
            )
        },
    )
    with pytest.raises(BadInputError, match="bad dtype"):
        NpzFile(bad_dtype)


def test_missing_keys_are_named(tmp_path: Path) -> None:
    path = tmp_path / "ep.npz"
    buffer = io.BytesIO()
    np.savez(buffer, image=np.zeros((2, 4, 4, 3), np.uint8))
    path.write_bytes(buffer.getvalue())
    with (
        NpzFile(path) as npz,
        pytest.raises(BadInputError, match=r"ep\.npz: missing keys \['reward'\]"),
    ):
        npz.require(["image", "reward"])
