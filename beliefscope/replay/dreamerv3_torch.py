"""NM512/dreamerv3-torch episodes: `train_eps/` and `eval_eps/`, one `.npz` per episode.

Files are `{YYYYmmddTHHMMSS}-{uuid4 hex}-{length}.npz` written by `tools.save_episodes`
(compressed), keys `image` uint8 (T, H, W, C), `action` float32 (T, A), `reward`, `discount`,
`is_first`, `is_terminal` (sometimes `is_last`) plus env extras. The repo already stores the
canonical convention: `action[t]` led to obs t, zeros on the reset row.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from beliefscope.errors import BadInputError, NotFoundError
from beliefscope.replay.base import Episode, EpisodeRef, OnError, raise_error, register
from beliefscope.replay.npz import Member, NpzFile, read_members

NAME = "dreamerv3-torch"
SPLITS = ("train_eps", "eval_eps")
EPISODE_NAME = re.compile(r"^\d{8}T\d{6}-[0-9a-f]{32}-(\d+)\.npz$")
REQUIRED = ("image", "action", "reward", "is_first", "is_terminal")
NATIVE_TRUTH = "qpos"  # the native format shares this file naming; its episodes carry truth


def _folders(root: Path) -> list[Path]:
    """`root` itself when it holds episodes, else its `train_eps/` and `eval_eps/`."""
    if any(EPISODE_NAME.match(p.name) for p in root.glob("*.npz")):
        return [root]
    return [root / split for split in SPLITS if (root / split).is_dir()]


def _check(path: Path, members: dict[str, Member]) -> int:
    missing = [key for key in REQUIRED if key not in members]
    if missing:
        raise BadInputError(f"not a dreamerv3-torch episode: missing keys {missing}", path=path)
    image = members["image"]
    if image.dtype != np.uint8 or image.ndim != 4:
        message = f"'image' must be uint8 (T, H, W, C), got {image.dtype} {image.shape}"
        raise BadInputError(message, path=path)
    steps = image.shape[0]
    if members["action"].ndim != 2:
        raise BadInputError(f"'action' must be (T, A), got {members['action'].shape}", path=path)
    for key in REQUIRED[1:] + tuple(k for k in ("is_last",) if k in members):
        if not members[key].shape or members[key].shape[0] != steps:
            message = f"'{key}' has shape {members[key].shape}, expected {steps} steps"
            raise BadInputError(message, path=path)
    if steps == 0:
        raise BadInputError("episode has no steps", path=path)
    return steps


class DreamerV3TorchReplay:
    name = NAME
    patterns = f"<time>-<uuid>-<length>.npz in the folder or its {', '.join(SPLITS)}"

    def detect(self, root: Path) -> bool:
        if (root / "world.json").is_file():
            return False
        for folder in _folders(root):
            first = next(
                (p for p in sorted(folder.glob("*.npz")) if EPISODE_NAME.match(p.name)), None
            )
            if first is not None:
                try:
                    return NATIVE_TRUTH not in read_members(first)
                except BadInputError:
                    return True  # ours by name; `list` reports what is wrong with it
        return False

    def list(self, root: Path, on_error: OnError = raise_error) -> list[EpisodeRef]:
        if not root.is_dir():
            raise BadInputError("replay directory does not exist or is not a directory", path=root)
        refs = []
        for folder in _folders(root):
            for path in sorted(folder.glob("*.npz")):
                if not EPISODE_NAME.match(path.name):
                    continue
                try:
                    steps = _check(path, read_members(path))
                except BadInputError as err:
                    on_error(err)
                    continue
                key = f"{NAME}:{path.relative_to(root).as_posix()}"
                refs.append(EpisodeRef(NAME, path, key, steps))
        return refs

    def load(self, ref: EpisodeRef) -> Episode:
        with NpzFile(ref.path) as npz:
            steps = _check(ref.path, npz.members)
            data = {key: npz.array(key) for key in REQUIRED}
            is_last = npz.array("is_last").astype(bool) if "is_last" in npz.members else None
        is_first = data["is_first"].astype(bool)
        is_first[0] = True  # a file is one whole episode
        if is_last is None:  # older envs omit it: the file ends where the episode does
            is_last = np.zeros(steps, bool)
            is_last[-1] = True
        action = data["action"].astype(np.float32)
        action[is_first] = 0.0  # the repo writes 0 * action there, possibly -0.0
        return Episode(
            ref=ref,
            image=data["image"],
            action=action,
            reward=data["reward"].astype(np.float32),
            is_first=is_first,
            is_last=is_last,
            is_terminal=data["is_terminal"].astype(bool),
        )

    def frame(self, ref: EpisodeRef, t: int) -> np.ndarray:
        with NpzFile(ref.path) as npz:
            image = npz.member("image")
            if image.ndim != 4 or not 0 <= t < image.shape[0]:
                message = f"no frame {t} (episode has {image.shape[:1]} steps)"
                raise NotFoundError(message, path=ref.path)
            return npz.row("image", t)


FORMAT = register(DreamerV3TorchReplay())
