"""TorchRL rollouts saved as TensorDicts: `td.memmap(dir)` folders or `torch.save(td)` files.

A replay directory is one memmap TensorDict (a folder with tensordict's `meta.json`) or a
folder of them and/or of `*.pt` files each holding one `torch.save`d `TensorDict`. The batch
shape is `[T]` or `[N, T]` (time last, as TorchRL's collectors and replay slices write it);
each row is split into episodes where `is_init` is set.

Keys read: `action`, `is_init` and `("next", "pixels")` (required); `("next", "reward")`,
`("next", "terminated")` and `("next", "done")` where present. TorchRL's rollout module
observes `("next", "pixels")[t]` after `action[t]` and zeroes the state and action where
`is_init` is set, so in the canonical convention `image[t] = next pixels[t]`,
`action[t] = action[t]` (zeroed on reset rows) and `is_first = is_init`. Pixels are
`(C, H, W)` (TorchRL's `ToTensorImage`) or `(H, W, C)`, `uint8` or float in [0, 1]
(quantised to `uint8`, exact for frames that came from `uint8`). A missing reward is NaN.

Nothing is executed to read them. Memmap folders are read from their documented layout
(`meta.json` names each leaf's dtype and shape, `<key>.memmap` holds its raw bytes) rather
than with `TensorDict.load_memmap`, which may import a class named in the metadata or
unpickle non-tensor leaves; only the keys above are opened. `torch.save`d TensorDicts are
read with `torch.load(weights_only=True)` where the two globals a TensorDict pickle names
(`tensordict._reductions._make_td` and `tensordict._td.TensorDict`) resolve to a function
here that only returns the pickled dict of tensors: no tensordict code runs. Any other class
in the pickle (a consolidated or lazily stacked TensorDict, a tensorclass) is refused.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from beliefscope.errors import BadInputError, NotFoundError
from beliefscope.replay.base import Episode, EpisodeRef, OnError, raise_error, register
from beliefscope.replay.npz import check_inflation

NAME = "torchrl-rollouts"
META = "meta.json"
TD_TYPE = "<class 'tensordict._td.TensorDict'>"
Key = tuple[str, ...]
PIXELS: Key = ("next", "pixels")
ACTION: Key = ("action",)
IS_INIT: Key = ("is_init",)
REWARD: Key = ("next", "reward")
TERMINATED: Key = ("next", "terminated")
DONE: Key = ("next", "done")
DTYPES = {
    f"torch.{name}": np.dtype(name)
    for name in ("uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64")
} | {"torch.bool": np.dtype(bool)}


def _is_memmap_td(folder: Path) -> bool:
    try:
        _read_meta(folder)
    except BadInputError:
        return False
    return True


def _is_saved_td(path: Path) -> bool:
    """A `torch.save` zip whose pickle names tensordict's TensorDict (its tensors are not read).
    One that would inflate past the limits is not peeked into but listed, so that reading it
    refuses it by name."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickle = next((n for n in archive.namelist() if n.endswith("/data.pkl")), None)
            if pickle is None:
                return False
            try:
                check_inflation(archive, path)
            except BadInputError:
                return True
            return b"tensordict._td" in archive.read(pickle)
    except (OSError, zipfile.BadZipFile):
        return False


def _sources(root: Path) -> list[Path]:
    """The TensorDicts of a replay directory: the folder itself, or its memmap folders and
    saved files."""
    if _is_memmap_td(root):
        return [root]
    children = sorted(root.iterdir())
    return [
        c
        for c in children
        if (c.is_dir() and _is_memmap_td(c))
        or (c.suffix == ".pt" and c.is_file() and _is_saved_td(c))
    ]


def _memmap_leaf(folder: Path, key: Key) -> np.ndarray | None:
    """One leaf of a memmap TensorDict, mapped lazily; None where the key is absent."""
    node = folder
    for part in key[:-1]:
        meta = _read_meta(node)
        if meta.get(part, {}).get("type") != "TensorDict":
            return None
        node = node / part
    entry = _read_meta(node).get(key[-1])
    if not isinstance(entry, dict) or "dtype" not in entry:
        return None
    if entry.get("is_nested"):
        raise BadInputError(f"{_name(key)} is a nested (ragged) tensor", path=folder)
    dtype = DTYPES.get(entry["dtype"])
    if dtype is None:
        raise BadInputError(f"{_name(key)} has unsupported dtype {entry['dtype']}", path=folder)
    shape = tuple(int(x) for x in entry.get("shape", ()))
    file = node / f"{key[-1]}.memmap"
    expected = int(np.prod(shape)) * dtype.itemsize
    if not file.is_file() or file.stat().st_size < expected:
        message = f"{_name(key)}: {file.name} is missing or shorter than its {shape} {dtype}"
        raise BadInputError(message, path=folder)
    if expected == 0:
        return np.zeros(shape, dtype)
    return np.memmap(file, dtype=dtype, mode="r", shape=shape)


def _read_meta(folder: Path) -> dict:
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError) as error:
        raise BadInputError(f"unreadable tensordict {META} ({error})", path=folder) from None
    if not isinstance(meta, dict) or meta.get("_type") != TD_TYPE:
        found = meta.get("_type") if isinstance(meta, dict) else type(meta).__name__
        message = f"not a memmap TensorDict ({META} names {found}, expected {TD_TYPE})"
        raise BadInputError(message, path=folder)
    return meta


def _pickled_td(cls: object, state: object) -> dict:
    """Stands in for `tensordict._reductions._make_td`: the TensorDict's own dict of tensors."""
    if not isinstance(state, dict) or not isinstance(state.get("_tensordict"), dict):
        raise ValueError("a TensorDict pickle without its '_tensordict' entries")
    return {**state["_tensordict"], "__batch_size__": state.get("_batch_size")}


class _PickledTensorDict:
    """Stands in for `tensordict._td.TensorDict` as the class argument of `_make_td`."""


def _saved_td(path: Path) -> dict:
    globals_: list[Callable[..., Any] | tuple[Callable[..., Any], str]] = [
        (_pickled_td, "tensordict._reductions._make_td"),
        (_PickledTensorDict, "tensordict._td.TensorDict"),
    ]
    try:
        with zipfile.ZipFile(path) as archive:
            check_inflation(archive, path)  # torch.load would inflate a deflated member whole
    except (OSError, zipfile.BadZipFile) as error:
        raise BadInputError(f"not a torch.save zip ({error})", path=path) from None
    try:
        with torch.serialization.safe_globals(globals_):
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch raises many kinds for corrupt or unsafe files
        text = str(error)
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        reason = (
            f"it needs {unsafe.group(1)}, which is not read"
            if unsafe
            else (text.strip().splitlines() or [type(error).__name__])[0]
        )
        message = f"cannot read this torch.save'd TensorDict safely ({reason}); only plain "
        raise BadInputError(
            f"{message}TensorDicts are read, or save with td.memmap(dir)", path=path
        ) from None
    if not isinstance(data, dict) or "__batch_size__" not in data:
        raise BadInputError("the file holds no TensorDict", path=path)
    return data


def _saved_leaf(data: dict, key: Key) -> np.ndarray | None:
    node: object = data
    for part in key:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if not isinstance(node, torch.Tensor):
        return None
    return node.numpy() if node.dtype != torch.bfloat16 else node.float().numpy()


def _name(key: Key) -> str:
    return repr(key[0]) if len(key) == 1 else repr(key)


@dataclass
class _Rollout:
    """The keys of one TensorDict, rows flattened: each array is (N, T, ...)."""

    path: Path
    batch: tuple[int, ...]
    arrays: dict[Key, np.ndarray | None]

    @classmethod
    def open(cls, path: Path, keys: tuple[Key, ...]) -> _Rollout:
        if path.is_dir():
            batch = tuple(int(x) for x in _read_meta(path).get("shape", ()))
            arrays = {key: _memmap_leaf(path, key) for key in keys}
        else:
            data = _saved_td(path)
            batch = tuple(data["__batch_size__"] or ())
            arrays = {key: _saved_leaf(data, key) for key in keys}
        if not batch:
            raise BadInputError("the TensorDict has no batch (time) dimension", path=path)
        for key in (PIXELS, ACTION, IS_INIT):
            if key in keys and arrays[key] is None:
                found = "" if path.is_file() else f" (see {META})"
                raise BadInputError(f"missing key {_name(key)}{found}", path=path)
        rows: dict[Key, np.ndarray | None] = {}
        for key, value in arrays.items():
            if value is None:
                rows[key] = None
                continue
            if tuple(value.shape[: len(batch)]) != batch:
                message = f"{_name(key)} has shape {value.shape}, not batch {list(batch)} first"
                raise BadInputError(message, path=path)
            rows[key] = value.reshape(-1, batch[-1], *value.shape[len(batch) :])  # (N, T, ...)
        return cls(path, batch, rows)

    def row(self, key: Key, r: int, t0: int, t1: int) -> np.ndarray | None:
        value = self.arrays[key]
        return None if value is None else np.asarray(value[r, t0:t1])


def _flags(value: np.ndarray | None, rollout: _Rollout, key: Key) -> np.ndarray | None:
    """A (N, T) bool column from a (N, T) or (N, T, 1) leaf."""
    if value is None:
        return None
    if value.ndim == 3 and value.shape[-1] == 1:
        value = value[..., 0]
    if value.ndim != 2:
        message = f"{_name(key)} must be one flag per step, got {value.shape[2:]} per step"
        raise BadInputError(message, path=rollout.path)
    return np.asarray(value).astype(bool)


def _image(pixels: np.ndarray, path: Path) -> np.ndarray:
    """(T, C, H, W) or (T, H, W, C), uint8 or float in [0, 1] -> (T, H, W, C) uint8."""
    if pixels.ndim != 4:
        raise BadInputError(f"('next', 'pixels') must be images, got {pixels.shape}", path=path)
    if pixels.shape[1] in (1, 3, 4):
        pixels = pixels.transpose(0, 2, 3, 1)  # (T, C, H, W) -> (T, H, W, C)
    if pixels.dtype == np.uint8:
        return np.ascontiguousarray(pixels)
    if pixels.dtype.kind != "f" or not ((pixels >= 0) & (pixels <= 1)).all():
        message = f"('next', 'pixels') must be uint8 or float in [0, 1], got {pixels.dtype}"
        raise BadInputError(message, path=path)
    return np.round(pixels.astype(np.float32) * 255.0).astype(np.uint8)


def _segments(is_init: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each episode in a row: a new one starts at each `is_init`."""
    starts = sorted({0, *np.flatnonzero(is_init).tolist()})
    return list(zip(starts, [*starts[1:], len(is_init)], strict=True))


class TorchRLRollouts:
    name = NAME
    patterns = "TensorDict memmap folders (meta.json) or torch.save(td) .pt files"

    def detect(self, root: Path) -> bool:
        return root.is_dir() and bool(_sources(root))

    def list(self, root: Path, on_error: OnError = raise_error) -> list[EpisodeRef]:
        if not root.is_dir():
            raise BadInputError("replay directory does not exist or is not a directory", path=root)
        refs: list[EpisodeRef] = []
        for source in _sources(root):
            try:
                rollout = _Rollout.open(source, (PIXELS, ACTION, IS_INIT))
                is_init = _flags(rollout.arrays[IS_INIT], rollout, IS_INIT)
                assert is_init is not None
            except BadInputError as err:
                on_error(err)
                continue
            rel = source.relative_to(root).as_posix()
            for r, flags in enumerate(is_init):
                for start, stop in _segments(flags):
                    refs.append(
                        EpisodeRef(
                            NAME,
                            source,
                            f"{NAME}:{rel}:{r}:{start}",
                            stop - start,
                            part=len(refs),
                            extra=(str(r), str(start), str(stop)),
                        )
                    )
        return refs

    def load(self, ref: EpisodeRef) -> Episode:
        r, t0, t1 = _locate(ref)
        rollout = _Rollout.open(ref.path, (PIXELS, ACTION, IS_INIT, REWARD, TERMINATED, DONE))
        if rollout.arrays[PIXELS].shape[1] < t1:  # type: ignore[union-attr]
            raise BadInputError(f"the rollout has fewer than {t1} steps now", path=ref.path)
        image = _image(rollout.row(PIXELS, r, t0, t1), ref.path)  # type: ignore[arg-type]
        action = rollout.row(ACTION, r, t0, t1).astype(np.float32)  # type: ignore[union-attr]
        action = action[:, None] if action.ndim == 1 else action.reshape(t1 - t0, -1)
        flags = {
            key: None if (v := _flags(rollout.arrays[key], rollout, key)) is None else v[r, t0:t1]
            for key in (IS_INIT, TERMINATED, DONE)
        }
        is_first = np.zeros(t1 - t0, bool)
        is_first[0] = True
        if flags[IS_INIT] is not None and flags[IS_INIT][1:].any():  # type: ignore[index]
            raise BadInputError("the episode's rows changed since it was listed", path=ref.path)
        action[is_first] = 0.0  # TorchRL's rollout zeroes the action on a reset step
        reward = rollout.row(REWARD, r, t0, t1)
        steps = t1 - t0
        is_last = flags[DONE]
        if is_last is None:  # the episode ended where the next one starts in the same row
            is_last = np.zeros(steps, bool)
            is_last[-1] = t1 < rollout.batch[-1]
        terminal = flags[TERMINATED]
        return Episode(
            ref=ref,
            image=image,
            action=action,
            reward=np.full(steps, np.nan, np.float32)
            if reward is None
            else reward.reshape(steps).astype(np.float32),
            is_first=is_first,
            is_last=is_last,
            is_terminal=np.zeros(steps, bool) if terminal is None else terminal,
        )

    def frame(self, ref: EpisodeRef, t: int) -> np.ndarray:
        r, t0, t1 = _locate(ref)
        if not 0 <= t < t1 - t0:
            raise NotFoundError(f"no frame {t} (episode has {t1 - t0} steps)", path=ref.path)
        rollout = _Rollout.open(ref.path, (PIXELS, ACTION, IS_INIT))
        return _image(rollout.row(PIXELS, r, t0 + t, t0 + t + 1), ref.path)[0]  # type: ignore[arg-type]


def _locate(ref: EpisodeRef) -> tuple[int, int, int]:
    try:
        r, t0, t1 = (int(x) for x in ref.extra)
    except ValueError:
        raise BadInputError("episode reference has no (row, start, stop)", path=ref.path) from None
    return r, t0, t1


FORMAT = register(TorchRLRollouts())
