"""The plug-in point for checkpoint formats: find checkpoints in a log dir, load one safely.

Loading never executes code: safetensors, `torch.load(weights_only=True)`, or a restricted
unpickler that admits only arrays and plain containers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from beliefscope.errors import BadInputError
from beliefscope.rssm.core import WorldModel


@dataclass(frozen=True)
class CheckpointRef:
    format: str
    path: Path  # the file or folder to load
    step: int | None  # training step, where the format records it


class CheckpointFormat(Protocol):
    name: str
    patterns: str
    """The file names `discover` looks for, as a user reads them in "no checkpoints found"."""

    def discover(self, logdir: Path) -> list[CheckpointRef]:
        """Checkpoints of this format under `logdir` (cheap: names and small files only)."""
        ...

    def load(self, ref: CheckpointRef, *, config: dict | None = None) -> WorldModel:
        """Build the model; raise `BadInputError` naming the file on any mismatch."""
        ...

    def content_files(self, ref: CheckpointRef) -> list[Path]:
        """The files whose bytes identify this checkpoint version (hashed for snapshots)."""
        ...


FORMATS: dict[str, CheckpointFormat] = {}


def register(fmt: CheckpointFormat) -> CheckpointFormat:
    FORMATS[fmt.name] = fmt
    return fmt


def get_format(name: str) -> CheckpointFormat:
    _load_builtin_formats()
    try:
        return FORMATS[name]
    except KeyError:
        known = sorted(FORMATS)
        raise BadInputError(f"unknown checkpoint format {name!r}; known: {known}") from None


def discover(logdir: Path, format: str | None = None) -> list[CheckpointRef]:
    """Every checkpoint under `logdir`, of one format or of any known one."""
    _load_builtin_formats()
    if not logdir.exists():
        raise BadInputError("log dir does not exist", path=logdir)
    fmts = [get_format(format)] if format else list(FORMATS.values())
    return [ref for fmt in fmts for ref in fmt.discover(logdir)]


def searched(format: str | None = None) -> str:
    """What `discover(logdir, format)` looks for, format by format, for error messages."""
    _load_builtin_formats()
    fmts = [get_format(format)] if format else list(FORMATS.values())
    return "; ".join(f"{fmt.name}: {fmt.patterns}" for fmt in fmts)


def load(ref: CheckpointRef, *, config: dict | None = None) -> WorldModel:
    return get_format(ref.format).load(ref, config=config)


def _load_builtin_formats() -> None:
    from beliefscope.rssm import builtin_formats  # noqa: F401
