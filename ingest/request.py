"""What an ingest is asked to do, what it reports, and where its progress goes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ingest.compute import ComputeOptions


@dataclass(frozen=True)
class IngestRequest:
    logdir: Path
    replay: tuple[Path, ...] = ()
    """Replay directories; empty: every recognised directory under `logdir`."""
    run_name: str | None = None
    variants: tuple[str, ...] = ("filter",)
    """Trace variants to compute (see `ingest.variants`); `filter` is the plain replay."""
    posterior: str = "mode"
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 16
    checkpoint_format: str | None = None
    options: ComputeOptions = field(default_factory=ComputeOptions)
    train_replay: tuple[Path, ...] = ()
    """Replay directories the run's checkpoints trained on (for checkpoints that do not say
    so themselves): their episodes are scored apart from held-out ones."""
    checkpoints: tuple[Path, ...] = ()
    """Only these checkpoints of the log dir (their files or folders; empty: every one)."""
    episode_keys: tuple[str, ...] = ()
    """Only the episodes with these keys (empty: every one found)."""
    snapshots: Path | None = None
    """Where checkpoint versions are copied (default: `<BELIEFSCOPE_HOME>/snapshots`); the
    server reads them back for its overlays, so it must lie inside the server's data roots."""
    roots: tuple[Path, ...] = ()
    """Folders every file ingest reads must really lie in, symlinks resolved (the server's
    data roots for its jobs); empty: the log dir and the replay folders named."""

    @property
    def name(self) -> str:
        return self.run_name or self.logdir.resolve().name

    @property
    def read_roots(self) -> tuple[Path, ...]:
        return self.roots or (self.logdir, *self.replay, *self.train_replay)

    @property
    def posterior_label(self) -> str:
        return "mode" if self.posterior == "mode" else f"sample:{self.seed}"


@dataclass
class IngestReport:
    job_id: int
    written: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Nothing stored and something went wrong: the ingest failed as a whole."""
        return bool(self.errors) and not self.written and not self.skipped


class ProgressSink(Protocol):
    """Where progress goes: a terminal bar, a log line, nothing."""

    def start(self, total: int) -> None: ...

    def advance(self, units: int, description: str) -> None: ...


class Silent:
    """Progress nobody watches."""

    def start(self, total: int) -> None:
        pass

    def advance(self, units: int, description: str) -> None:
        pass
