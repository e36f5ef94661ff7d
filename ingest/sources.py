"""What to ingest: checkpoints (snapshotted by content) and replay episodes of a log dir."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from beliefscope.errors import BadInputError
from beliefscope.replay.base import EpisodeRef, ReplayFormat, detect_format, get_format
from beliefscope.rssm import formats as ckpt_formats
from beliefscope.rssm.formats import CheckpointRef

MAX_DEPTH = 4
"""How deep below a log dir `replay_dirs` looks for replay directories."""


@dataclass(frozen=True)
class Snapshot:
    """A checkpoint version frozen by content: training may overwrite the original file."""

    ref: CheckpointRef  # points into the snapshot copy
    source: CheckpointRef  # where it was found
    content_hash: str
    copy_root: Path  # the snapshot's folder, which mirrors ...
    source_root: Path  # ... this folder of the log dir

    def as_source(self, message: str) -> str:
        """`message` (an error about the copy) with the copy's paths replaced by the user's."""
        return message.replace(str(self.copy_root), str(self.source_root))


def content_hash(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def snapshot(ref: CheckpointRef, snapshots: Path) -> Snapshot:
    """Copy a checkpoint under `snapshots/<hash>/`, keeping its layout, and hash its content.

    A folder checkpoint is copied whole (its markers, e.g. DreamerV3's `done`, go with it);
    content files outside it (a run's `config.yaml`) keep their place relative to it, so the
    format loads the copy exactly as it would the original. The hash is taken over the copied
    content files, so the snapshot holds exactly the bytes hashed even when the trainer
    rewrites the original in the meantime.
    """
    content = ckpt_formats.get_format(ref.format).content_files(ref)
    missing = [f for f in content if not f.is_file()]
    if missing:
        raise BadInputError("checkpoint file disappeared before it could be read", path=missing[0])
    extra = sorted(p for p in ref.path.rglob("*") if p.is_file()) if ref.path.is_dir() else []
    root = Path(os.path.commonpath([ref.path.parent, *(f.parent for f in content)]))
    staging = snapshots / f".staging-{os.getpid()}-{ref.path.name}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for f in dict.fromkeys([*content, *extra]):
            dest = staging / f.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
    except BaseException:  # a full disk, say: leave no half copy behind
        shutil.rmtree(staging, ignore_errors=True)
        raise
    digest = content_hash([staging / f.relative_to(root) for f in content])
    final = snapshots / digest[:32]
    try:
        staging.rename(final)
    except OSError:  # already snapshotted (by an earlier run or a concurrent ingest)
        if not final.is_dir():
            raise
        shutil.rmtree(staging, ignore_errors=True)
    return Snapshot(replace(ref, path=final / ref.path.relative_to(root)), ref, digest, final, root)


def check_readable(path: Path, roots: Sequence[Path]) -> None:
    """Refuse a file or folder ingest must not read: a name that is not UTF-8 (the store
    keeps names as text) or one whose real location (symlinks followed) is outside `roots`."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise BadInputError("file name is not valid UTF-8", path=shown) from None
    real = path.resolve()
    inside = [root.resolve() for root in roots]
    if not any(real == root or real.is_relative_to(root) for root in inside):
        where = ", ".join(str(root) for root in inside)
        raise BadInputError(f"links to {real}, outside the data roots ({where})", path=path)


def replay_dirs(
    logdir: Path, explicit: list[Path] | None = None
) -> list[tuple[Path, ReplayFormat]]:
    """Replay directories to read: the explicit ones, else every recognised dir under logdir."""
    if explicit:  # resolved: the store records where episodes live, for any later reader
        return [(d.resolve(), detect_format(d.resolve())) for d in explicit]
    logdir = logdir.resolve()
    found: list[tuple[Path, ReplayFormat]] = []

    def walk(d: Path, depth: int) -> None:
        try:
            fmt = detect_format(d)
        except BadInputError:
            fmt = None
        if fmt is not None:
            found.append((d, fmt))
            return
        if depth < MAX_DEPTH:
            for child in sorted(
                p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")
            ):
                walk(child, depth + 1)

    if not logdir.is_dir():
        raise BadInputError("log dir does not exist or is not a directory", path=logdir)
    walk(logdir, 0)
    return found


def list_episodes(dirs: list[tuple[Path, ReplayFormat]]) -> list[EpisodeRef]:
    return [ref for d, fmt in dirs for ref in fmt.list(d)]


def episode_format(ref: EpisodeRef) -> ReplayFormat:
    return get_format(ref.format)
