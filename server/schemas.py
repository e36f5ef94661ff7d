"""API models: what the API promises, separate from the store's values and ORM rows.

Every list answers `{data, count, limit, offset}` (`count` = total matches, not page size).
Non-finite numbers in series are sent as the strings "NaN", "Infinity" and "-Infinity": JSON
has no NaN, and turning NaN into null would confuse it with "not available".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from beliefscope.store.values import Page

T = TypeVar("T")


class Public(BaseModel):
    model_config = ConfigDict(from_attributes=True, ser_json_inf_nan="strings")


class Paged(Public, Generic[T]):
    data: list[T]
    count: int
    limit: int
    offset: int

    @classmethod
    def of(cls, page: Page[Any]) -> Any:
        return cls.model_validate(
            {
                "data": list(page.items),
                "count": page.total,
                "limit": page.limit,
                "offset": page.offset,
            }
        )


class ErrorPublic(BaseModel):
    detail: str
    status: int


# -- runs, checkpoints, episodes -----------------------------------------------------------


class RunPublic(Public):
    id: int
    name: str
    logdir: str
    format: str | None
    family: str | None
    created: datetime
    n_checkpoints: int
    n_episodes: int
    n_traces: int
    latest_job_state: str | None


class RunsPublic(Paged[RunPublic]):
    pass


class CheckpointPublic(Public):
    id: int
    run_id: int
    step: int | None
    content_hash: str
    format: str
    family: str | None
    config: dict[str, Any]
    created: datetime
    n_traces: int


class CheckpointsPublic(Paged[CheckpointPublic]):
    pass


class EpisodePublic(Public):
    id: int
    run_id: int
    key: str
    format: str
    length: int
    episode_return: float | None
    has_truth: bool
    truth_summary: dict[str, Any]
    created: datetime


class EpisodesPublic(Paged[EpisodePublic]):
    pass


# -- traces ----------------------------------------------------------------------------------


class TracePublic(Public):
    id: int
    checkpoint_id: int
    episode_id: int
    probe: str
    posterior: str
    length: int
    metrics: list[str]
    arrays: list[str]
    kl_mean: float | None
    kl_max: float | None
    correction_mean: float | None
    correction_max: float | None
    created: datetime


class TracesPublic(Paged[TracePublic]):
    pass


class SeriesPublic(Public):
    t: list[int]
    values: list[float]


class TraceSeriesPublic(Public):
    trace_id: int
    length: int
    series: dict[str, SeriesPublic]
    absent: list[str]
    downsampled: bool


class TraceArrayPublic(Public):
    trace_id: int
    name: str
    t: list[int]
    values: list[Any]
    shape: list[int]
    downsampled: bool


# -- summaries, jobs -------------------------------------------------------------------------


class StatsPublic(Public):
    mean: float | None
    median: float | None
    p95: float | None
    n_finite: int
    n_nonfinite: int


class SummaryPublic(Public):
    checkpoint_id: int
    step: int | None
    n_traces: int
    kl: StatsPublic
    correction: StatsPublic


class SummariesPublic(Public):
    data: list[SummaryPublic]
    count: int


class JobErrorPublic(Public):
    id: int
    job_id: int
    unit: str
    file: str | None
    reason: str
    created: datetime


class JobErrorsPublic(Paged[JobErrorPublic]):
    pass


class JobPublic(Public):
    id: int
    kind: str
    run_id: int | None
    state: str
    args: dict[str, Any]
    done: int
    total: int
    message: str | None
    created: datetime
    started: datetime | None
    finished: datetime | None
    heartbeat: datetime | None
    n_errors: int
    errors: list[JobErrorPublic] = []


class JobsPublic(Paged[JobPublic]):
    pass


class IngestCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root: str = Field(min_length=1, max_length=4096)
    """A registered data root (or a directory inside one) to ingest as a log dir."""
    run: str | None = Field(default=None, min_length=1, max_length=200)
    """The run's name (default: the directory's name)."""


# -- access: tokens, login, webhooks ---------------------------------------------------------


class LoginCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=200)


class WhoAmIPublic(BaseModel):
    name: str | None
    via: Literal["bearer", "cookie", "anonymous"]
    can_write: bool


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000, pattern=r"^https?://\S+$")
    min_severity: str = "high"


class WebhookPublic(Public):
    id: int
    url: str
    min_severity: str
    created_by: str
    active: bool
    created: datetime
    n_pending: int
    n_failed: int


class WebhooksPublic(Paged[WebhookPublic]):
    pass


class DeliveryPublic(Public):
    id: int
    webhook_id: int
    flag_id: int
    payload: dict[str, Any]
    state: str
    attempts: int
    next_attempt: datetime
    last_status: int | None
    last_error: str | None
    created: datetime
    delivered: datetime | None


class DeliveriesPublic(Paged[DeliveryPublic]):
    pass
