"""This project's own episode format, written by `beliefscope world generate`.

A directory holds `world.json` (manifest: seed, version, scene parameters, episode list),
`scene.xml` (the MuJoCo scene, for re-rendering any step from another camera) and one
uncompressed `.npz` per episode named `{YYYYmmddTHHMMSS}-{uuid hex}-{length}.npz`.

Per-step keys follow DreamerV3: `image` uint8 (T, H, W, 3), `action` float32 (T, A),
`reward` float32 (T,), `is_first`, `is_last`, `is_terminal` bool (T,); plus ground truth:
`qpos` (T, nq) and `qvel` (T, nv) float64 in the scene's joint order, `visible_frac` float32
(T,) (box pixels visible / box pixels with the occluder hidden), `occluded` bool (T,)
(`visible_frac` < 0.2) and `slip` bool (T,) (the box was kicked on the way to obs t).

Stored action convention (as in official DreamerV3): `action[t]` is chosen *after* seeing
obs t and leads to obs t+1; the last row is chosen but never executed. `load` converts to the
canonical convention of `beliefscope.rssm.core` (`action[t]` led to obs t; zeros on resets).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from beliefscope.errors import BadInputError, NotFoundError
from beliefscope.replay.base import Episode, EpisodeRef, OnError, raise_error, register
from beliefscope.replay.npz import Member, NpzFile, read_members

NAME = "beliefscope"
VERSION = 1
MANIFEST = "world.json"
SCENE = "scene.xml"
ACTION_CONVENTION = "chosen_after_obs"
EPISODE_NAME = re.compile(r"^\d{8}T\d{6}-[0-9a-f]{32}-\d+\.npz$")

STEP_KEYS: dict[str, tuple[str, int]] = {
    "image": ("u", 4),
    "action": ("f", 2),
    "reward": ("f", 1),
    "is_first": ("b", 1),
    "is_last": ("b", 1),
    "is_terminal": ("b", 1),
}
TRUTH_KEYS: dict[str, tuple[str, int]] = {
    "qpos": ("f", 2),
    "qvel": ("f", 2),
    "visible_frac": ("f", 1),
    "occluded": ("b", 1),
    "slip": ("b", 1),
}
"""key -> (numpy dtype kind, ndim); every key has the episode's length as its first axis."""


def episode_name(stamp: str, uid: str, length: int) -> str:
    return f"{stamp}-{uid}-{length}.npz"


def canonical_actions(action: np.ndarray, is_first: np.ndarray) -> np.ndarray:
    """`chosen_after_obs` -> canonical: the action that led to obs t is the one chosen at t-1."""
    out = np.zeros_like(action, dtype=np.float32)
    out[1:] = action[:-1]
    out[is_first] = 0.0
    return out


def check_members(path: Path, members: dict[str, Member]) -> int:
    """Validate keys, dtypes and shapes from the headers alone; returns the episode length."""
    expected = {**STEP_KEYS, **TRUTH_KEYS}
    missing = sorted(set(expected) - set(members))
    if missing:
        raise BadInputError(f"not a {NAME} episode: missing keys {missing}", path=path)
    image = members["image"]
    if image.dtype != np.uint8 or image.ndim != 4 or image.shape[-1] != 3:
        raise BadInputError(
            f"'image' must be uint8 (T, H, W, 3), got {image.dtype} {image.shape}", path=path
        )
    steps = image.shape[0]
    if steps == 0:
        raise BadInputError("episode has no steps", path=path)
    for key, (kind, ndim) in expected.items():
        m = members[key]
        if m.dtype.kind != kind or len(m.shape) != ndim or m.shape[0] != steps:
            raise BadInputError(
                f"'{key}' must be a {ndim}-d {_KINDS[kind]} array of {steps} steps, "
                f"got {m.dtype} {m.shape}",
                path=path,
            )
    return steps


_KINDS = {"u": "uint8", "f": "float", "b": "bool"}


class BeliefscopeFormat:
    """Episodes of the MuJoCo occlusion world, with ground truth."""

    name = NAME
    patterns = f"{MANIFEST} with <time>-<id>-<length>.npz episodes (or .npz with ground truth)"

    def detect(self, root: Path) -> bool:
        if (root / MANIFEST).is_file():
            return True
        first = next(iter(sorted(root.glob("*.npz"))), None)
        if first is None:
            return False
        try:
            return set(TRUTH_KEYS) <= set(read_members(first))
        except BadInputError:
            return False

    def list(self, root: Path, on_error: OnError = raise_error) -> list[EpisodeRef]:
        if not root.is_dir():
            raise BadInputError("replay directory does not exist or is not a directory", path=root)
        refs = []
        for path in sorted(root.glob("*.npz")):
            try:
                steps = check_members(path, read_members(path))
            except BadInputError as err:
                on_error(err)
                continue
            refs.append(EpisodeRef(NAME, path, f"{NAME}:{path.name}", steps))
        return refs

    def load(self, ref: EpisodeRef) -> Episode:
        with NpzFile(ref.path) as npz:
            check_members(ref.path, npz.members)
            data = {key: npz.array(key) for key in {**STEP_KEYS, **TRUTH_KEYS}}
        is_first = data["is_first"]
        return Episode(
            ref=ref,
            image=data["image"],
            action=canonical_actions(data["action"], is_first),
            reward=data["reward"].astype(np.float32),
            is_first=is_first,
            is_last=data["is_last"],
            is_terminal=data["is_terminal"],
            truth={key: data[key] for key in TRUTH_KEYS},
        )

    def truth(self, ref: EpisodeRef) -> dict[str, np.ndarray]:
        """The ground-truth arrays without the frames (a few KB instead of the episode)."""
        with NpzFile(ref.path) as npz:
            check_members(ref.path, npz.members)
            return {key: npz.array(key) for key in TRUTH_KEYS}

    def frame(self, ref: EpisodeRef, t: int) -> np.ndarray:
        with NpzFile(ref.path) as npz:
            image = npz.member("image")
            if image.ndim != 4 or not 0 <= t < image.shape[0]:
                raise NotFoundError(
                    f"no frame {t} (episode has {image.shape[:1]} steps)", path=ref.path
                )
            return npz.row("image", t)


FORMAT = register(BeliefscopeFormat())
