"""Safe, lazy access to `.npz` archives (numpy's zip of `.npy` members).

Nothing is unpickled: headers are parsed as literals and object dtypes are refused, so a
hostile file can at worst be rejected. Every problem (not a zip, truncated, a header that
lies about its size, members inflating past the limits, a missing key) is a `BadInputError`
naming the file. The limits (`max_inflated_bytes`, `max_inflate_ratio` of the settings) are
checked on the zip's directory, before a byte is decompressed or an array allocated.

Rows are read lazily, so one frame of a long episode never loads the whole image array:
stored (uncompressed) members are memory-mapped at their data offset inside the zip;
compressed members are decompressed as a stream up to the rows asked for, in bounded chunks.
"""

from __future__ import annotations

import ast
import math
import struct
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Literal

import numpy as np

from beliefscope.config import get_settings
from beliefscope.errors import BadInputError

MAX_HEADER_BYTES = 10_000
"""numpy's own limit for .npy headers; a longer one is hostile or broken."""
MAX_DEFLATE_RATIO = 1100
"""Deflate cannot expand more than ~1032x; a member claiming more is lying about its shape."""
_CHUNK = 1 << 20
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., name length, extra length
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, struct.error)


@dataclass(frozen=True)
class Member:
    """One array in the archive, as its header declares it."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool
    compressed: bool
    header_bytes: int  # length of the .npy header before the data
    file_offset: int | None  # where the data starts in the .npz file (stored members only)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape[1:]) * self.dtype.itemsize


class NpzFile:
    """An open `.npz`: member headers parsed up front, arrays read on demand.

    Use as a context manager; not safe to share between threads.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file: IO[bytes] = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as err:
            raise BadInputError(f"cannot open: {err.strerror or err}", path=self.path) from err
        try:
            self._zip = zipfile.ZipFile(self._file)
            check_inflation(self._zip, self.path)
            self._infos = {
                info.filename[: -len(".npy")]: info
                for info in self._zip.infolist()
                if info.filename.endswith(".npy")
            }
            self.members = {name: self._parse(name, info) for name, info in self._infos.items()}
        except BadInputError:
            self.close()
            raise
        except _READ_ERRORS as err:
            self.close()
            raise BadInputError(
                f"not a readable .npz (truncated or corrupt): {err}", path=self.path
            ) from err

    def __enter__(self) -> NpzFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if hasattr(self, "_zip"):
            self._zip.close()
        self._file.close()

    def keys(self) -> list[str]:
        return list(self.members)

    def require(self, names: Iterable[str]) -> None:
        missing = [name for name in names if name not in self.members]
        if missing:
            raise BadInputError(
                f"missing keys {missing} (has {sorted(self.members)})", path=self.path
            )

    def member(self, name: str) -> Member:
        self.require([name])
        return self.members[name]

    def array(self, name: str) -> np.ndarray:
        """The whole array (a copy, not tied to the file)."""
        m = self.member(name)
        if m.file_offset is not None:
            return np.array(self.memmap(name))
        out = np.empty(m.shape, m.dtype, order="F" if m.fortran_order else "C")
        with self._open(name) as stream:
            self._skip(stream, m.header_bytes, name)
            self._read_into(stream, out.reshape(-1, order="A").view(np.uint8), name)
        return out

    def rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of the first axis, reading no more of the file than needed."""
        m = self.member(name)
        if not m.shape:
            raise BadInputError(f"'{name}' is a scalar, it has no rows", path=self.path)
        start, stop = max(start, 0), min(stop, m.shape[0])
        if stop <= start:
            return np.empty((0, *m.shape[1:]), m.dtype)
        if m.file_offset is not None:
            return np.array(self.memmap(name)[start:stop])
        if m.fortran_order:  # rows are scattered through the stream: no way around a full read
            return self.array(name)[start:stop]
        out = np.empty((stop - start, *m.shape[1:]), m.dtype)
        with self._open(name) as stream:
            self._skip(stream, m.header_bytes + start * m.row_bytes, name)
            self._read_into(stream, out.reshape(-1).view(np.uint8), name)
        return out

    def row(self, name: str, index: int) -> np.ndarray:
        m = self.member(name)
        if not m.shape or not 0 <= index < m.shape[0]:
            raise BadInputError(
                f"row {index} out of range for '{name}' of shape {m.shape}", path=self.path
            )
        return self.rows(name, index, index + 1)[0]

    def memmap(self, name: str) -> np.ndarray:
        """A read-only memory map of a stored member (no copy, no decompression)."""
        m = self.member(name)
        if m.file_offset is None:
            raise BadInputError(
                f"'{name}' is compressed and cannot be memory-mapped", path=self.path
            )
        if m.nbytes == 0:
            return np.empty(m.shape, m.dtype)
        order: Literal["C", "F"] = "F" if m.fortran_order else "C"
        return np.memmap(self.path, m.dtype, "r", offset=m.file_offset, shape=m.shape, order=order)

    def _open(self, name: str) -> IO[bytes]:
        try:
            return self._zip.open(self._infos[name])
        except _READ_ERRORS as err:
            raise BadInputError(f"member '{name}' unreadable: {err}", path=self.path) from err

    def _skip(self, stream: IO[bytes], count: int, name: str) -> None:
        while count > 0:
            chunk = self._read(stream, min(count, _CHUNK), name)
            count -= len(chunk)

    def _read(self, stream: IO[bytes], count: int, name: str) -> bytes:
        try:
            data = stream.read(count)
        except _READ_ERRORS as err:
            raise BadInputError(f"member '{name}' is corrupt: {err}", path=self.path) from err
        if len(data) < count:
            raise BadInputError(f"member '{name}' is truncated", path=self.path)
        return data

    def _read_into(self, stream: IO[bytes], out: np.ndarray, name: str) -> None:
        view, done = out.data, 0
        while done < len(view):
            chunk = self._read(stream, min(len(view) - done, _CHUNK), name)
            view[done : done + len(chunk)] = chunk
            done += len(chunk)

    def _parse(self, name: str, info: zipfile.ZipInfo) -> Member:
        def bad(problem: str) -> BadInputError:
            return BadInputError(f"member '{name}': {problem}", path=self.path)

        if info.flag_bits & 0x1:
            raise bad("encrypted members are not supported")
        with self._open(name) as stream:
            preamble = self._read(stream, 8, name)
            if preamble[:6] != b"\x93NUMPY":
                raise bad("not a .npy array")
            version = (preamble[6], preamble[7])
            if version not in ((1, 0), (2, 0), (3, 0)):
                raise bad(f"unsupported .npy version {version}")
            size_format = "<H" if version == (1, 0) else "<I"
            size_bytes = struct.calcsize(size_format)
            (length,) = struct.unpack(size_format, self._read(stream, size_bytes, name))
            if length > MAX_HEADER_BYTES:
                raise bad(f".npy header of {length} bytes is too long")
            text = self._read(stream, length, name).decode(
                "utf8" if version == (3, 0) else "latin1"
            )
        try:
            header = ast.literal_eval(text)
        except (ValueError, SyntaxError) as err:
            raise bad(f"unreadable .npy header {text.strip()!r}") from err
        if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
            raise bad(f"malformed .npy header {text.strip()!r}")
        shape = header["shape"]
        if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise bad(f"bad shape {shape!r}")
        try:
            dtype = np.lib.format.descr_to_dtype(header["descr"])
        except (TypeError, ValueError) as err:
            raise bad(f"bad dtype {header['descr']!r}") from err
        if dtype.hasobject:
            raise bad("object arrays need pickle, which is never allowed here")
        header_bytes = 8 + size_bytes + length
        member = Member(
            name,
            dtype,
            shape,
            bool(header["fortran_order"]),
            info.compress_type != zipfile.ZIP_STORED,
            header_bytes,
            None,
        )
        if header_bytes + member.nbytes != info.file_size:
            raise bad(
                f"header declares {dtype} {shape} ({member.nbytes} bytes) "
                f"but the member holds {info.file_size - header_bytes} bytes"
            )
        if info.compress_type == zipfile.ZIP_DEFLATED and (
            info.file_size > MAX_DEFLATE_RATIO * max(info.compress_size, 1) + 1024
        ):
            raise bad(f"declares {info.file_size} bytes from {info.compress_size} compressed bytes")
        if member.compressed:
            return member
        return replace(member, file_offset=self._data_offset(info) + header_bytes)

    def _data_offset(self, info: zipfile.ZipInfo) -> int:
        """Where a stored member's bytes start: after its local header, name and extra field."""
        self._file.seek(info.header_offset)
        signature, name_len, extra_len = _LOCAL_HEADER.unpack(self._file.read(_LOCAL_HEADER.size))
        if signature != b"PK\x03\x04":
            raise BadInputError(f"corrupt zip entry for '{info.filename}'", path=self.path)
        start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        if start + info.file_size > self._file.seek(0, 2):
            raise BadInputError(f"member '{info.filename}' is truncated", path=self.path)
        return start


def check_inflation(archive: zipfile.ZipFile, path: Path) -> None:
    """Refuse an archive whose compressed members would inflate past the configured limits:
    `max_inflated_bytes`, or `max_inflate_ratio` times the archive's size on disk."""
    settings = get_settings()
    on_disk = path.stat().st_size
    inflated = sum(i.file_size for i in archive.infolist() if i.compress_type != zipfile.ZIP_STORED)
    limit = min(settings.max_inflated_bytes, int(settings.max_inflate_ratio * on_disk))
    if inflated > limit:
        raise BadInputError(
            f"its compressed members inflate to {inflated:,} bytes from {on_disk:,} on disk, "
            f"over the limit of {limit:,} (BELIEFSCOPE_MAX_INFLATED_BYTES, "
            "BELIEFSCOPE_MAX_INFLATE_RATIO)",
            path=path,
        )


def read_members(path: str | Path) -> dict[str, Member]:
    """Just the headers: names, dtypes, shapes (cheap; for listing episodes)."""
    with NpzFile(path) as npz:
        return dict(npz.members)
