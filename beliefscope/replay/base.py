"""Replay episodes as the product sees them, and the plug-in point for replay formats.

A format is a `ReplayFormat`: it recognises a directory, lists the episodes in it cheaply
(no frames decoded), loads one episode's arrays, and reads single frames lazily for the UI.
Every format converts its own action convention to the canonical one of `beliefscope.rssm.core`
(`action[t]` led to observation t; zeros on reset rows).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from beliefscope.errors import BadInputError
from beliefscope.values.traces import EpisodeInfo


@dataclass(frozen=True)
class EpisodeRef:
    """Where an episode lives; `key` is stable across machines (format + relative path + part)."""

    format: str
    path: Path  # the file (or first chunk) holding it
    key: str
    length: int
    part: int = 0  # index of the episode inside a multi-episode stream (chunked formats)
    extra: tuple[str, ...] = ()  # format-specific locators (e.g. chunk files of a stream)

    @property
    def locator(self) -> dict[str, Any]:
        """What the store keeps of the ref besides its format, path, key and length."""
        return {"part": self.part, "extra": list(self.extra)}

    @classmethod
    def stored(cls, episode: EpisodeInfo, path: Path | None = None) -> EpisodeRef:
        """The ref of an episode the store knows, back from its locator; at `path` when the
        caller resolved the stored path itself (the server, inside its data roots)."""
        return cls(
            episode.format,
            Path(episode.source_path) if path is None else path,
            episode.key,
            episode.length,
            int(episode.locator.get("part", 0)),
            tuple(episode.locator.get("extra", ())),
        )


@dataclass
class Episode:
    """One episode's arrays, time-major, canonical conventions."""

    ref: EpisodeRef
    image: np.ndarray  # (T, H, W, C) uint8
    action: np.ndarray  # (T, A) float32, action[t] led to obs t, zeros where is_first
    reward: np.ndarray  # (T,) float32, reward received on arriving at obs t
    is_first: np.ndarray  # (T,) bool
    is_last: np.ndarray  # (T,) bool
    is_terminal: np.ndarray  # (T,) bool
    truth: dict[str, np.ndarray] = field(default_factory=dict)
    """Ground truth where the source has it (`qpos`, `qvel`, `visible_frac`, `occluded`, `slip`)."""

    def __post_init__(self) -> None:
        steps = len(self.image)
        if self.image.ndim != 4 or self.image.dtype != np.uint8:
            raise BadInputError(
                f"image must be uint8 (T, H, W, C), got {self.image.dtype} {self.image.shape}",
                path=self.ref.path,
            )
        for name in ("action", "reward", "is_first", "is_last", "is_terminal"):
            value = getattr(self, name)
            if len(value) != steps:
                raise BadInputError(
                    f"'{name}' has {len(value)} steps but 'image' has {steps}", path=self.ref.path
                )
        if self.action.ndim != 2:
            raise BadInputError(
                f"action must be (T, A), got {self.action.shape}", path=self.ref.path
            )
        if steps == 0:
            raise BadInputError("episode has no steps", path=self.ref.path)

    @property
    def length(self) -> int:
        return len(self.image)

    @property
    def episode_return(self) -> float:
        return float(np.nansum(self.reward[~self.is_first]))

    @property
    def fingerprint(self) -> str:
        """A short hash of the frames and actions: the same episode under another file name
        (a copy, a regenerated world) has the same fingerprint, so a checkpoint can say which
        episodes it trained on and scoring can keep those apart from held-out ones."""
        digest = hashlib.sha256(np.ascontiguousarray(self.image).data)
        digest.update(np.ascontiguousarray(self.action, dtype=np.float32).data)
        return digest.hexdigest()[:16]


OnError = Callable[[BadInputError], None]


def raise_error(err: BadInputError) -> None:
    raise err


class ReplayFormat(Protocol):
    name: str
    patterns: str
    """The files `detect` recognises, as a user reads them in "no episodes found"."""

    def detect(self, root: Path) -> bool:
        """True when `root` holds episodes of this format (checked by file names, cheaply)."""
        ...

    def list(self, root: Path, on_error: OnError = raise_error) -> list[EpisodeRef]:
        """Episodes under `root`; a file that can't be read goes to `on_error` (which raises
        by default), so one corrupt file need not hide the others."""
        ...

    def load(self, ref: EpisodeRef) -> Episode: ...

    def frame(self, ref: EpisodeRef, t: int) -> np.ndarray:
        """Frame t as (H, W, C) uint8, without loading the whole episode's frames."""
        ...


FORMATS: dict[str, ReplayFormat] = {}


def load_truth(ref: EpisodeRef) -> dict[str, np.ndarray]:
    """An episode's ground truth alone. A format may read it without the frames (a
    `truth(ref)` method, as the native format has: lists of many episodes read it); any other
    loads the episode."""
    fmt = get_format(ref.format)
    reader: Callable[[EpisodeRef], dict[str, np.ndarray]] | None = getattr(fmt, "truth", None)
    return reader(ref) if reader is not None else fmt.load(ref).truth


def register(fmt: ReplayFormat) -> ReplayFormat:
    FORMATS[fmt.name] = fmt
    return fmt


def get_format(name: str) -> ReplayFormat:
    _load_builtin_formats()
    try:
        return FORMATS[name]
    except KeyError:
        raise BadInputError(f"unknown replay format {name!r}; known: {sorted(FORMATS)}") from None


def detect_format(root: Path) -> ReplayFormat:
    """The format of a replay directory, recognised by its files."""
    _load_builtin_formats()
    if not root.is_dir():
        raise BadInputError("replay directory does not exist or is not a directory", path=root)
    for fmt in FORMATS.values():
        if fmt.detect(root):
            return fmt
    raise BadInputError(f"no known replay format recognised (looked for {searched()})", path=root)


def searched() -> str:
    """What `detect_format` recognises, format by format, for error messages."""
    _load_builtin_formats()
    return "; ".join(f"{fmt.name}: {fmt.patterns}" for fmt in FORMATS.values())


def _load_builtin_formats() -> None:
    """Import the modules that register the built-in formats (each calls `register`)."""
    from beliefscope.replay import formats  # noqa: F401
