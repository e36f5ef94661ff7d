"""Known corruptions of real replays, applied to the arrays as the replay's files store them.

A corruption maps the episode files of a replay directory (their arrays, in file order) to the
files of a corrupted copy, which the tests and `bench/audit.py` read back through the product's
own replay readers and audit. Every key of these formats is a per-step array, so joining or
cutting episodes applies to all of them (ground truth included). Both the native format (which
stores the action chosen after each frame) and dreamerv3-torch's (the action that led to it)
turn a stored array shifted by one step into canonical actions one step late.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from beliefscope.replay.base import detect_format

Arrays = dict[str, np.ndarray]
Corruption = Callable[[list[Arrays]], list[Arrays | None]]
"""Files' arrays -> the corrupted copy's, file by file; None where a file is gone (joined)."""


def _late(values: np.ndarray) -> np.ndarray:
    """Each row moved one step later (the first row zero)."""
    out = np.zeros_like(values)
    out[1:] = values[:-1]
    return out


def actions_shifted(files: list[Arrays]) -> list[Arrays | None]:
    return [{**f, "action": _late(f["action"])} for f in files]


def rewards_shifted(files: list[Arrays]) -> list[Arrays | None]:
    return [{**f, "reward": _late(f["reward"])} for f in files]


def channels_reversed(files: list[Arrays]) -> list[Arrays | None]:
    return [{**f, "image": np.ascontiguousarray(f["image"][..., ::-1])} for f in files]


def _join(a: Arrays, b: Arrays, cut: int, start: int) -> Arrays:
    """a[:cut] then b[start:], one stream with no is_first where b's part begins."""
    joined = {k: np.concatenate([a[k][:cut], b[k][start:]]) for k in a}
    joined["is_first"][cut] = False
    return joined


def is_first_dropped(files: list[Arrays]) -> list[Arrays | None]:
    """The first two episodes in one file, the second's is_first lost."""
    return [_join(files[0], files[1], len(files[0]["is_first"]), 0), None, *files[2:]]


def is_first_early(files: list[Arrays]) -> list[Arrays | None]:
    """The first two episodes in one file, the reset flagged one step before the second."""
    joined = _join(files[0], files[1], len(files[0]["is_first"]), 0)
    joined["is_first"][len(files[0]["is_first"]) - 1] = True
    return [joined, None, *files[2:]]


def is_first_inside(files: list[Arrays]) -> list[Arrays | None]:
    """A reset flagged in the middle of the first episode, where its frames continue."""
    first = files[0]["is_first"].copy()
    first[len(first) // 2] = True
    return [{**files[0], "is_first": first}, *files[1:]]


def episodes_spliced(files: list[Arrays]) -> list[Arrays | None]:
    """The first half of one episode, then the second half of another, as one episode."""
    a, b = files[0], files[1]
    return [_join(a, b, len(a["is_first"]) // 2, len(b["is_first"]) // 2), None, *files[2:]]


def every_pair(files: list[Arrays], spliced: bool) -> list[Arrays | None]:
    """Files 0+1, 2+3, ... each joined into one (halves when `spliced`, whole episodes with
    the second's is_first lost otherwise): many cuts in one replay, to count how many the
    audit finds."""
    out: list[Arrays | None] = []
    for a, b in zip(files[0::2], files[1::2], strict=False):
        if spliced:
            out += [_join(a, b, len(a["is_first"]) // 2, len(b["is_first"]) // 2), None]
        else:
            out += [_join(a, b, len(a["is_first"]), 0), None]
    return out + files[len(out) :]


CORRUPTIONS: dict[str, Corruption] = {
    "actions shifted by one": actions_shifted,
    "is_first dropped": is_first_dropped,
    "rewards shifted by one": rewards_shifted,
    "channels reversed": channels_reversed,
    "two episodes spliced": episodes_spliced,
    "is_first one step early": is_first_early,
    "is_first inside an episode": is_first_inside,
}
EXPECTED: dict[str, tuple[str, str]] = {
    "actions shifted by one": ("action_alignment", "actions off by 1 step"),
    "is_first dropped": ("reset_alignment", "without is_first"),
    "rewards shifted by one": ("reward_alignment", "rewards shifted by +1 step"),
    "channels reversed": ("observation_convention", "channels reversed"),
    "two episodes spliced": ("reset_alignment", "episodes spliced"),
    "is_first one step early": ("reset_alignment", "is_first fires 1 step early"),
    "is_first inside an episode": ("reset_alignment", "is_first inside an episode"),
}
"""Corruption -> (the check that must fail, words its `corruption` must contain)."""


def episode_files(root: Path) -> list[Path]:
    """The replay's episode files in an order fixed by the world's seed: both formats name a
    file `{time}-{uuid}-{length}.npz`, the world draws the uuid from the seed, and the time is
    when it was written."""
    fmt = detect_format(root)
    paths = dict.fromkeys(ref.path for ref in fmt.list(root))
    return sorted(paths, key=lambda p: p.name.split("-", 1)[-1])


def corrupted_copy(src: Path, dst: Path, corruption: Corruption | None) -> Path:
    """A copy of the replay directory `src` at `dst` (its other files too), with its episodes
    corrupted; a joined file keeps the first file's name with its new length."""
    files = episode_files(src)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.npz"))
    arrays = []
    for path in files:
        with np.load(path, allow_pickle=False) as npz:
            arrays.append({k: npz[k] for k in npz.files})
    out: list[Arrays | None] = list(arrays) if corruption is None else corruption(arrays)
    compressed = detect_format(src).name == "dreamerv3-torch"
    for path, data in zip(files, out, strict=True):
        if data is None:
            continue
        stem = path.stem.rsplit("-", 1)[0]
        target = dst / path.relative_to(src).parent / f"{stem}-{len(data['is_first'])}.npz"
        target.parent.mkdir(parents=True, exist_ok=True)
        (np.savez_compressed if compressed else np.savez)(target, **data)
    return dst


def as_dreamerv3_torch(world: Path, out: Path) -> Path:
    """The world's episodes as NM512/dreamerv3-torch saves episodes: `train_eps/` of compressed
    `{time}-{uuid}-{length}.npz` holding the action that led to each frame (zeros on the
    reset row), `discount` and no ground truth."""
    fmt = detect_format(world)
    (out / "train_eps").mkdir(parents=True)
    for ref in fmt.list(world):
        ep = fmt.load(ref)
        stamp, uid, _ = ref.path.stem.split("-")
        np.savez_compressed(
            out / "train_eps" / f"{stamp}-{uid}-{ep.length}.npz",
            image=ep.image,
            action=ep.action,
            reward=ep.reward,
            discount=np.ones(ep.length, np.float32),
            is_first=ep.is_first,
            is_terminal=ep.is_terminal,
        )
    return out
