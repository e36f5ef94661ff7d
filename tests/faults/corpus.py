"""A corpus of hostile and broken inputs, made fresh for each test.

Each entry is a file (or link) that ingest must refuse with a clear error naming it, without
running any code it carries (pickle payloads would create `marker`) and without writing
anything to the store.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class BadFile:
    name: str  # what the entry is
    path: Path  # the file ingest will meet (as ingest names it)
    expect: str  # a fragment of the error's reason


class _RunsCode:
    """Unpickling this calls os.system: a loader that runs code leaves the marker behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def _pickle_bomb() -> bytes:
    """A small pickle that expands into 10**9 list items if materialised naively
    (a billion-laughs list of lists, built from memo references)."""
    out = io.BytesIO()
    out.write(b"\x80\x02]q\x00(K\x01K\x02K\x03K\x04K\x05K\x06K\x07K\x08K\tK\ne")  # list of 10
    for i in range(1, 10):  # each level: a list of 10 references to the previous level
        out.write(b"]q" + bytes([i]) + b"(" + (b"h" + bytes([i - 1])) * 10 + b"e")
    out.write(b".")
    return out.getvalue()


def _episode(good: Path) -> dict[str, np.ndarray]:
    with np.load(good, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def _save(path: Path, arrays: dict[str, np.ndarray], *, allow_pickle: bool = False) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for key, value in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, value, allow_pickle=allow_pickle)
            zf.writestr(f"{key}.npy", buf.getvalue())
    return path


def _raw_member(path: Path, arrays: dict[str, np.ndarray], name: str, blob: bytes) -> Path:
    _save(path, {k: v for k, v in arrays.items() if k != name})
    with zipfile.ZipFile(path, "a", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{name}.npy", blob)
    return path


def _npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1")


def _deflate_bomb(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An `image` member whose zip entry declares 3.7 GB inflating from a few hundred bytes
    (the sizes are patched in, as a hostile file would have them)."""
    shape = (300_000, 64, 64, 3)
    header = _npy_header("|u1", shape)
    declared = len(header) + int(np.prod(shape))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, value in arrays.items():
            if key != "image":
                buf = io.BytesIO()
                np.lib.format.write_array(buf, value)
                zf.writestr(f"{key}.npy", buf.getvalue())
        zf.writestr("image.npy", header + bytes(4096))
    data = bytearray(path.read_bytes())
    local = data.find(b"image.npy") - 30  # name follows the 30-byte local header
    central = data.rfind(b"image.npy") - 46  # and the 46-byte central directory header
    assert data[local : local + 4] == b"PK\x03\x04" and data[central : central + 4] == b"PK\x01\x02"
    struct.pack_into("<I", data, local + 22, declared)
    struct.pack_into("<I", data, central + 24, declared)
    path.write_bytes(bytes(data))


def build_episodes(replay: Path, good_replay: Path, outside: Path, marker: Path) -> list[BadFile]:
    """Bad episodes in a replay directory of the native format (manifest copied)."""
    replay.mkdir(parents=True)
    for name in ("world.json", "scene.xml"):
        shutil.copyfile(good_replay / name, replay / name)
    good = sorted(good_replay.glob("*.npz"))[0]
    arrays = _episode(good)
    steps = len(arrays["image"])
    raw = good.read_bytes()
    stem = "20200101T000000-" + "0" * 31
    bad: list[BadFile] = []

    def add(label: str, name: str, expect: str) -> Path:
        path = replay / name
        bad.append(BadFile(label, path, expect))
        return path

    add("truncated npz", f"{stem}1-{steps}.npz", "").write_bytes(raw[: len(raw) // 3])
    add("empty file", f"{stem}2-{steps}.npz", "").write_bytes(b"")
    add("not a zip", f"{stem}3-{steps}.npz", "").write_bytes(os.urandom(4096))
    corrupt = bytearray(raw)
    central = raw.rfind(b"PK\x01\x02")
    corrupt[central : central + 64] = os.urandom(64)
    add("corrupt central directory", f"{stem}4-{steps}.npz", "").write_bytes(bytes(corrupt))
    objects = np.empty(steps, dtype=object)
    objects[:] = [_RunsCode(marker)] * steps
    _save(
        add("pickled objects in npz", f"{stem}5-{steps}.npz", "pickle"),
        {**arrays, "reward": objects},
        allow_pickle=True,
    )
    _raw_member(
        add("pickle bomb member", f"{stem}6-{steps}.npz", ""),
        arrays,
        "reward",
        _npy_header("|O", (steps,)) + _pickle_bomb(),
    )
    _deflate_bomb(add("deflate bomb", f"{stem}7-{steps}.npz", "over the limit"), arrays)
    _raw_member(
        add("huge declared shape", f"{stem}8-{steps}.npz", "declares"),
        arrays,
        "image",
        _npy_header("|u1", (10**12, 64, 64, 3)) + bytes(64),
    )
    _raw_member(
        add("unreadable npy header", f"{stem}9-{steps}.npz", "header"),
        arrays,
        "action",
        b"\x93NUMPY\x01\x00" + struct.pack("<H", 16) + b"{__import__('os')",
    )
    _save(
        add("wrong image channels", f"{stem}a-{steps}.npz", "image"),
        {**arrays, "image": np.zeros((steps, 64, 64, 4), np.uint8)},
    )
    _save(
        add("wrong action rank", f"{stem}b-{steps}.npz", "action"),
        {**arrays, "action": arrays["action"][:, 0]},
    )
    _save(
        add("reward of the wrong length", f"{stem}c-{steps}.npz", "reward"),
        {**arrays, "reward": arrays["reward"][:-3]},
    )
    _save(add("missing keys", f"{stem}d-{steps}.npz", "missing"), {"image": arrays["image"]})
    nan_frames = arrays["image"].astype(np.float32)
    nan_frames[5] = np.nan
    _save(add("NaN frames", f"{stem}e-{steps}.npz", "uint8"), {**arrays, "image": nan_frames})
    inf_frames = arrays["image"].astype(np.float32)
    inf_frames[7] = np.inf
    _save(add("inf frames", f"{stem}f-{steps}.npz", "uint8"), {**arrays, "image": inf_frames})
    _save(
        add("empty episode", f"{stem}g-0.npz", "no steps"),
        {k: v[:0] for k, v in arrays.items()},
    )
    _save(
        add("one-step episode", f"{stem}h-1.npz", "one step"),
        {k: v[:1] for k, v in arrays.items()},
    )
    name = os.fsdecode(b"20200101T000000-\xff\xfe-" + str(steps).encode() + b".npz")
    shutil.copyfile(good, add("non-UTF-8 name", name, "UTF-8"))
    outside.mkdir(parents=True, exist_ok=True)
    escaped = outside / good.name
    shutil.copyfile(good, escaped)
    add("symlink out of the data root", f"{stem}i-{steps}.npz", "outside").symlink_to(escaped)
    (outside / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    add("symlink to a system file", f"{stem}j-{steps}.npz", "").symlink_to(outside / "passwd")
    return bad


def build_checkpoints(run: Path, outside: Path, marker: Path) -> list[BadFile]:
    """Bad checkpoints added to a copy of a good run directory."""
    good = sorted(run.glob("ckpt-*.safetensors"))[0]
    raw = good.read_bytes()
    bad: list[BadFile] = []

    def add(label: str, name: str, expect: str) -> Path:
        path = run / name
        path.parent.mkdir(parents=True, exist_ok=True)
        bad.append(BadFile(label, path, expect))
        return path

    add("truncated safetensors", "ckpt-00000091.safetensors", "").write_bytes(raw[: len(raw) // 2])
    add("safetensors huge header", "ckpt-00000092.safetensors", "").write_bytes(
        struct.pack("<Q", 2**60) + b"{}"
    )
    header_len = struct.unpack("<Q", raw[:8])[0]
    header = raw[8 : 8 + header_len].replace(b'"beliefscope"', b'"elsewhere!!"')
    add("no model metadata", "ckpt-00000093.safetensors", "metadata").write_bytes(
        raw[:8] + header + raw[8 + header_len :]
    )
    torch.save(
        {"payload": _RunsCode(marker)}, add("pickle that runs code", "a/latest.pt", "weights_only")
    )
    add("pickle bomb checkpoint", "b/latest.pt", "").write_bytes(_pickle_bomb())
    escaped = outside / "ckpt-00000094.safetensors"
    outside.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(good, escaped)
    add("checkpoint symlink out of the root", "ckpt-00000094.safetensors", "outside").symlink_to(
        escaped
    )
    return bad


def count_pickle_payloads() -> int:
    """Guard: the payload really runs code when unpickled the unsafe way (checked on a
    throwaway marker, so the corpus tests prove something)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "ran"
        pickle.loads(pickle.dumps(_RunsCode(probe)))  # noqa: S301 - the point of the guard
        return int(probe.exists())
