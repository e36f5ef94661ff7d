"""API models: what the API promises, separate from the store's values and ORM rows.

Every list answers `{data, count, limit, offset}` (`count` = total matches, not page size).
Non-finite numbers in series are sent as the strings "NaN", "Infinity" and "-Infinity": JSON
has no NaN, and turning NaN into null would confuse it with "not available".
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from beliefscope.values.audit import AuditReport
from beliefscope.values.page import Page
from beliefscope.values.review import ProbeSummaryInfo

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
    replay_dirs: list[str]
    created: datetime
    n_checkpoints: int
    n_episodes: int
    n_traces: int
    latest_job_state: str | None


class RunsPublic(Paged[RunPublic]):
    pass


class RunDeletedPublic(Public):
    """What deleting a run removed (flags, reviews, scores and jobs went with it)."""

    name: str
    checkpoints: int
    episodes: int
    traces: int


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
    variant: str
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
    checkpoints_done: int
    checkpoints_total: int
    episodes_total: int
    errors: list[JobErrorPublic] = []


class JobsPublic(Paged[JobPublic]):
    pass


class IngestCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root: str = Field(min_length=1, max_length=4096)
    """A registered data root (or a directory inside one) to ingest as a log dir."""
    run: str | None = Field(default=None, min_length=1, max_length=200)
    """The run's name (default: the directory's name)."""


# -- access: tokens, login, activity, webhooks -----------------------------------------------

ScopeName = Literal["read", "review", "admin"]


class LoginCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=200)


class WhoAmIPublic(BaseModel):
    name: str | None
    via: Literal["bearer", "cookie", "anonymous"]
    scope: ScopeName | None
    can_write: bool
    """Whether the scope allows reviews (`review` or `admin`)."""


class TokenPublic(Public):
    """A token as listings show it: never its secret, only the secret's first characters."""

    id: int
    name: str
    prefix: str
    scope: ScopeName
    created: datetime
    expires: datetime | None
    revoked: datetime | None
    state: Literal["live", "expired", "revoked"]


class TokensPublic(Public):
    data: list[TokenPublic]
    count: int


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    scope: ScopeName = "review"
    expires: str | None = Field(
        default=None, max_length=20, description="a lifetime: 90m, 12h, 30d, 2w"
    )


class TokenCreatedPublic(TokenPublic):
    secret: str
    """The token itself: shown this once, only its hash is stored."""


class ActivityPublic(Public):
    id: int
    at: datetime
    who: str
    action: str
    target: str
    details: dict[str, Any]


class ActivitiesPublic(Paged[ActivityPublic]):
    pass


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000, pattern=r"^https?://\S+$")
    min_severity: Literal["low", "medium", "high"] = "high"


class WebhookPublic(Public):
    """A hook; its URL is masked to scheme, host and port except for admins."""

    id: int
    url: str
    min_severity: str
    created_by: str
    active: bool
    created: datetime
    n_pending: int
    n_failed: int
    deleted: datetime | None = None
    deleted_by: str | None = None


class WebhooksPublic(Paged[WebhookPublic]):
    pass


class WebhookSecretPublic(Public):
    secret: str
    """The Standard Webhooks signing secret (`whsec_...`): shown this once."""


class WebhookCreatedPublic(WebhookPublic):
    secret: str
    """The Standard Webhooks signing secret (`whsec_...`): shown this once."""


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


# -- review: flags, history, rules, scores, findings -----------------------------------------

Severity = Literal["low", "medium", "high"]
FlagState = Literal["open", "confirmed", "dismissed"]
Category = Literal["occlusion", "slip", "delay", "other"]


class FlagPublic(Public):
    id: int
    trace_id: int
    checkpoint_id: int
    episode_id: int
    variant: str
    t0: int
    t1: int
    source: str
    rule_name: str | None
    rule_version: int | None
    peak: float | None
    peak_t: int | None
    severity: str
    state: str
    category: str | None
    tags: list[str]
    notes: str
    reviewed: bool
    stale: bool
    created: datetime
    updated: datetime
    updated_by: str
    deleted: datetime | None = None
    """Set on a deleted flag (only admins can read those)."""
    deleted_by: str | None = None


class FlagsPublic(Paged[FlagPublic]):
    pass


class FlagCreate(BaseModel):
    """A manual flag over steps t0..t1 of a trace."""

    model_config = ConfigDict(extra="forbid")

    trace_id: int = Field(ge=1, le=2**31 - 1)
    t0: int = Field(ge=0, le=2**31 - 1)
    t1: int = Field(ge=0, le=2**31 - 1)
    severity: Severity = "medium"
    state: FlagState = "open"
    category: Category | None = None
    tags: list[Annotated[str, Field(max_length=50)]] = Field(default=[], max_length=20)
    notes: str = Field(default="", max_length=10_000)


class FlagUpdate(BaseModel):
    """Review fields to change; omitted fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    state: FlagState | None = None
    category: Category | None = None
    clear_category: bool = False
    tags: list[Annotated[str, Field(max_length=50)]] | None = Field(default=None, max_length=20)
    notes: str | None = Field(default=None, max_length=10_000)


class NoteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=10_000)


class HistoryPublic(Public):
    id: int
    flag_id: int
    at: datetime
    who: str
    action: str
    changes: dict[str, list[Any]]


class HistoriesPublic(Public):
    data: list[HistoryPublic]
    count: int


class RulePublic(Public):
    id: int
    name: str
    metric: str
    threshold: float
    mode: str
    floor: float | None
    normalise: str
    min_duration: int
    merge_gap: int
    severity: str
    variant: str
    enabled: bool
    version: int
    created: datetime
    created_by: str


class RulesPublic(Public):
    data: list[RulePublic]
    count: int


class RuleWrite(BaseModel):
    """Fields of a rule; creating needs metric and threshold, editing changes what is given."""

    model_config = ConfigDict(extra="forbid")

    metric: str | None = Field(default=None, max_length=50)
    threshold: float | None = Field(default=None, allow_inf_nan=False)
    mode: Literal["absolute", "mad", "percentile"] | None = None
    floor: float | None = Field(default=None, allow_inf_nan=False)
    normalise: Literal["none", "episode"] | None = None
    min_duration: int | None = Field(default=None, ge=1, le=1_000_000)
    merge_gap: int | None = Field(default=None, ge=0, le=1_000_000)
    severity: Severity | None = None
    variant: str | None = Field(
        default=None,
        max_length=100,
        validation_alias=AliasChoices("variant", "probe"),  # `probe`: its old name
        description="the trace variant the rule reads (default filter)",
    )
    enabled: bool | None = None


class RuleCreate(RuleWrite):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[\w.:-]+$")


class RuleApply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    checkpoint_ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] | None = Field(
        default=None, max_length=1000
    )


class ApplyPublic(Public):
    rule: str
    version: int
    traces: int
    steps: int
    created: int
    updated: int
    stale: int
    deleted: int


class ThresholdPublic(Public):
    """The raw metric level a rule version holds one trace to (what the episode page draws);
    null when the rule reads another trace variant or its checkpoint has nothing finite."""

    rule: str
    version: int
    metric: str
    trace_id: int
    threshold: float | None


class ScorePublic(Public):
    id: int
    checkpoint_id: int
    step: int | None
    rules: list[str]
    slip_recall: float
    reappearance_recall: float
    precision: float
    slip_auc: float
    episode_ap: float
    slip_events: int
    plain_events: int
    flags: int
    episodes: int
    slip_episodes: int
    created: datetime


class ScoresPublic(Public):
    data: list[ScorePublic]
    count: int


class FindingPublic(Public):
    kind: str
    checkpoint: int
    summary: str
    evidence: dict[str, Any]
    examples: list[list[int]]


class FindingsPublic(Public):
    data: list[FindingPublic]
    count: int


class AuditWherePublic(Public):
    episode: str
    episode_id: int | None
    t: int
    t_end: int | None
    note: str
    link: str | None = Field(description="dashboard URL that opens the episode at step t")


class AuditCheckPublic(Public):
    name: str
    title: str
    status: Literal["pass", "warn", "fail", "inconclusive"]
    finding: str
    corruption: str | None
    rule: str
    numbers: dict[str, Any]
    where: list[AuditWherePublic]


class AuditPublic(Public):
    checkpoint_id: int
    step: int | None
    family: str
    status: Literal["pass", "warn", "fail", "inconclusive"]
    episodes: list[str]
    steps: int
    seconds: float
    created: datetime
    checks: list[AuditCheckPublic]

    @classmethod
    def of(cls, stored: ProbeSummaryInfo) -> AuditPublic:
        report = AuditReport.from_dict(stored.data)
        checks = [
            {
                **{k: getattr(c, k) for k in ("name", "title", "status", "finding", "corruption")},
                "rule": c.rule,
                "numbers": dict(c.numbers),
                "where": [{**asdict(w), "link": w.link(stored.checkpoint_id)} for w in c.where],
            }
            for c in report.checks
        ]
        return cls.model_validate(
            {
                "checkpoint_id": stored.checkpoint_id,
                "step": stored.step,
                "family": report.family,
                "status": report.status,
                "episodes": list(report.episodes),
                "steps": report.steps,
                "seconds": report.seconds,
                "created": stored.created,
                "checks": checks,
            }
        )


class AuditsPublic(Public):
    data: list[AuditPublic]
    count: int
