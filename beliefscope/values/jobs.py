"""Ingest jobs and their per-unit errors, as the read layer returns them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

JOB_STATES = ("queued", "running", "done", "failed")


@dataclass(frozen=True)
class JobErrorInfo:
    id: int
    job_id: int
    unit: str
    file: str | None
    reason: str
    created: datetime


@dataclass(frozen=True)
class JobInfo:
    id: int
    kind: str
    run_id: int | None
    state: str  # queued, running, done, failed
    args: dict[str, Any]
    done: int
    total: int
    message: str | None
    created: datetime
    started: datetime | None
    finished: datetime | None
    heartbeat: datetime | None
    n_errors: int
    checkpoints_done: int = 0
    checkpoints_total: int = 0
    episodes_total: int = 0
    """Progress in the plan's terms: checkpoints done of planned, each over this many
    episodes (`done`/`total` count traces: checkpoints x episodes x variants)."""
    errors: tuple[JobErrorInfo, ...] = field(default=())  # filled by get_job only

    def progress(self) -> str:
        """The job's state as a user reads it: `running: 2/4 checkpoints x 64 episodes`,
        `failed: <why>`, `done`."""
        if self.state == "failed":
            return f"failed: {self.message or 'see its errors'}"
        if self.state in ("queued", "running") and self.checkpoints_total:
            return (
                f"{self.state}: {self.checkpoints_done}/{self.checkpoints_total} checkpoints x "
                f"{self.episodes_total} episodes ({self.done}/{self.total} traces)"
            )
        return self.state
