"""Official DreamerV3 replay chunks: `replay/{time}-{uuid}-{succ}-{length}.npz`.

Each environment worker writes a stream of compressed chunks (1024 rows by default, cut
early at every checkpoint save); a chunk's file name names its successor (`succ`), and
episodes run on across chunk boundaries. Streams are rebuilt by following `succ` and split
into episodes on `is_first`. Only whole episodes are listed: a leading fragment whose
`is_first` row is in a chunk no longer on disk, and the tail the run is still writing (its
successor is not on disk yet), are left out until they are complete.

Stored convention: row t holds obs t and the action chosen *after* seeing it, so the action
that led to obs t is `action[t-1]`; `load` shifts to the canonical convention. Discrete
actions stored as integer indices become one index column, widened to one-hot by the model
(`RSSMCell.action_input`), since the number of actions is known only to the checkpoint.
The chunks' `dyn/deter` and `dyn/stoch` are collection-time states, not any checkpoint's,
and are not read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from beliefscope.errors import BadInputError, NotFoundError
from beliefscope.replay.base import Episode, EpisodeRef, OnError, raise_error, register
from beliefscope.replay.npz import NpzFile

NAME = "dreamerv3-chunks"
FOLDERS = ("replay", "eval_replay", "replay_eval")
CHUNK_NAME = re.compile(r"^(\d{8}T\d{6}F\d{6})-([0-9A-Za-z]{22})-([0-9A-Za-z]{22})-(\d+)\.npz$")
NO_SUCCESSOR = "0" * 22
STEP_KEYS = ("image", "action", "reward", "is_first", "is_last", "is_terminal")


@dataclass(frozen=True)
class Chunk:
    path: Path
    time: str
    uuid: str
    succ: str
    length: int

    @classmethod
    def parse(cls, path: Path) -> Chunk:
        match = CHUNK_NAME.match(path.name)
        if not match:
            raise BadInputError(
                "not a replay chunk name ({time}-{uuid}-{succ}-{length}.npz): "
                "its succ link cannot be read",
                path=path,
            )
        time, uuid, succ, length = match.groups()
        return cls(path, time, uuid, succ, int(length))


def _chunk_dirs(root: Path) -> list[Path]:
    """Folders holding chunks: `root` itself, or its replay folders (and replica subfolders)."""
    candidates = [root] + [root / name for name in FOLDERS]
    candidates += [
        sub for folder in candidates[1:] if folder.is_dir() for sub in sorted(folder.iterdir())
    ]
    return [
        d
        for d in candidates
        if d.is_dir() and any(CHUNK_NAME.match(p.name) for p in d.glob("*.npz"))
    ]


def _streams(folder: Path) -> list[list[Chunk]]:
    """Chains of chunks linked by `succ`, oldest first."""
    chunks = {c.uuid: c for c in (Chunk.parse(p) for p in sorted(folder.glob("*.npz")))}
    successors = [c.succ for c in chunks.values() if c.succ in chunks]
    if len(successors) != len(set(successors)):
        twice = next(s for s in successors if successors.count(s) > 1)
        raise BadInputError(f"two chunks name chunk {twice} as their successor", path=folder)
    heads = sorted(
        (c for c in chunks.values() if c.uuid not in set(successors)), key=lambda c: c.time
    )
    streams: list[list[Chunk]] = []
    seen: set[str] = set()
    for head in heads:
        stream: list[Chunk] = []
        chunk: Chunk | None = head
        while chunk is not None and chunk.uuid not in seen:
            seen.add(chunk.uuid)
            stream.append(chunk)
            chunk = chunks.get(chunk.succ)
        streams.append(stream)
    if len(seen) != len(chunks):
        raise BadInputError("chunk succ links form a cycle", path=folder)
    return streams


def _flags(chunk: Chunk) -> tuple[np.ndarray, np.ndarray]:
    with NpzFile(chunk.path) as npz:
        npz.require(STEP_KEYS)
        is_first, is_last = npz.array("is_first").astype(bool), npz.array("is_last").astype(bool)
    if len(is_first) != chunk.length or len(is_last) != chunk.length:
        message = f"name says {chunk.length} rows but 'is_first' has {len(is_first)}"
        raise BadInputError(message, path=chunk.path)
    return is_first, is_last


def _episodes(root: Path, stream: list[Chunk], part0: int) -> list[EpisodeRef]:
    """Whole episodes of one stream (see the module docstring for what is left out)."""
    flags = [_flags(chunk) for chunk in stream]
    is_first = np.concatenate([f for f, _ in flags])
    is_last = np.concatenate([last for _, last in flags])
    offsets = np.cumsum([0] + [c.length for c in stream])  # stream row where each chunk starts
    starts = np.flatnonzero(is_first)
    ends = list(starts[1:]) + [len(is_first)]
    refs: list[EpisodeRef] = []
    for start, end in zip(starts, ends, strict=True):
        if end == len(is_first) and not is_last[end - 1]:
            continue  # still being written: its successor chunk is not on disk (yet)
        first = int(np.searchsorted(offsets, start, side="right")) - 1
        last = int(np.searchsorted(offsets, end - 1, side="right")) - 1
        head = stream[first]
        row = int(start - offsets[first])
        refs.append(
            EpisodeRef(
                NAME,
                head.path,
                f"{NAME}:{head.path.relative_to(root).as_posix()}:{row}",
                int(end - start),
                part=part0 + len(refs),
                extra=(str(row), *(c.path.name for c in stream[first : last + 1])),
            )
        )
    return refs


def _locate(ref: EpisodeRef) -> tuple[int, list[Chunk]]:
    """The episode's first row and its chunks, checking every succ link on the way."""
    if len(ref.extra) < 2:
        raise BadInputError("episode reference does not list its chunks", path=ref.path)
    row, names = int(ref.extra[0]), ref.extra[1:]
    chunks: list[Chunk] = []
    for name in names:
        path = ref.path.parent / name
        if chunks and chunks[-1].succ != Chunk.parse(path).uuid:
            raise BadInputError(
                f"succ link does not name the next chunk {name}", path=chunks[-1].path
            )
        if not path.is_file() and not chunks:
            raise BadInputError("chunk file is missing", path=path)
        if not path.is_file():
            raise BadInputError(
                f"the episode continues in chunk {name} (this chunk's succ link), which is missing",
                path=chunks[-1].path,
            )
        chunks.append(Chunk.parse(path))
    return row, chunks


def _read_rows(
    ref: EpisodeRef, keys: tuple[str, ...], t0: int = 0, t1: int | None = None
) -> dict[str, np.ndarray]:
    """Rows [t0, t1) of the episode for `keys`, decompressing only the chunks they fall in."""
    row, chunks = _locate(ref)
    t1 = ref.length if t1 is None else t1
    parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    begin = row + t0  # position in the first chunk's row numbering
    remaining = t1 - t0
    for chunk in chunks:
        if remaining <= 0:
            break
        if begin >= chunk.length:
            begin -= chunk.length
            continue
        stop = min(chunk.length, begin + remaining)
        with NpzFile(chunk.path) as npz:
            npz.require(keys)
            for key in keys:
                parts[key].append(npz.rows(key, begin, stop))
        remaining -= stop - begin
        begin = 0
    if remaining > 0:
        raise BadInputError(
            f"chunks hold {ref.length - remaining} of the episode's rows", path=ref.path
        )
    return {key: np.concatenate(values) for key, values in parts.items()}


def canonical_actions(action: np.ndarray, is_first: np.ndarray) -> np.ndarray:
    """Chosen-after-obs -> canonical (led to obs t): shift by one, zeros on reset rows.

    Integer actions (discrete indices) become one float index column; the model widens them.
    """
    action = action.reshape(len(action), -1).astype(np.float32)  # (T,) -> (T, 1); (T, A) kept
    out = np.zeros_like(action)
    out[1:] = action[:-1]
    out[is_first] = 0.0
    return out


class DreamerV3ChunksReplay:
    name = NAME
    patterns = f"<time>-<uuid>-<succ>-<length>.npz chunks in the folder or its {', '.join(FOLDERS)}"

    def detect(self, root: Path) -> bool:
        return bool(_chunk_dirs(root))

    def list(self, root: Path, on_error: OnError = raise_error) -> list[EpisodeRef]:
        if not root.is_dir():
            raise BadInputError("replay directory does not exist or is not a directory", path=root)
        refs: list[EpisodeRef] = []
        for folder in _chunk_dirs(root):
            for stream in _streams(folder):
                try:
                    refs += _episodes(root, stream, len(refs))
                except BadInputError as err:  # a broken stream; the others are still read
                    on_error(err)
        return refs

    def load(self, ref: EpisodeRef) -> Episode:
        data = _read_rows(ref, STEP_KEYS)
        is_first = data["is_first"].astype(bool)
        image = data["image"]
        if image.dtype != np.uint8 or image.ndim != 4:
            raise BadInputError(
                f"'image' must be uint8 (T, H, W, C), got {image.dtype} {image.shape}",
                path=ref.path,
            )
        return Episode(
            ref=ref,
            image=image,
            action=canonical_actions(data["action"], is_first),
            reward=data["reward"].astype(np.float32),
            is_first=is_first,
            is_last=data["is_last"].astype(bool),
            is_terminal=data["is_terminal"].astype(bool),
        )

    def frame(self, ref: EpisodeRef, t: int) -> np.ndarray:
        if not 0 <= t < ref.length:
            raise NotFoundError(f"no frame {t} (episode has {ref.length} steps)", path=ref.path)
        return _read_rows(ref, ("image",), t, t + 1)["image"][0]


FORMAT = register(DreamerV3ChunksReplay())
