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
    errors: tuple[JobErrorInfo, ...] = field(default=())  # filled by get_job only
