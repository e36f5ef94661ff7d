"""Reads and writes of the review workflow: rules, flags, review history, scores, findings.

The API and the dashboard call these functions; each takes the `Store` first and everything
else by keyword, and returns frozen values. Applying a rule reads one metric column of every
matching trace in bulk and recomputes flags with `beliefscope.review.segments` (no model runs).

Human reviews survive rule re-runs: a new segment overlapping an existing flag of the same
rule on the same trace *is* that flag (its id, state, notes and history stay; its bounds and
peak follow the rule); a flag the rule no longer finds is deleted only if nobody reviewed it,
otherwise it stays, marked stale. Review edits run in one write transaction each (SQLite
serialises writers, PostgreSQL locks the row), record [old, new] per changed field in the
history, and the last writer's value is the current one.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from beliefscope.errors import BadInputError, NotFoundError
from beliefscope.review import diagnostics, segments
from beliefscope.review.priority import FlagSummary, priority
from beliefscope.review.rules import DEFAULT_RULES, Rule, edit_rule, make_rule
from beliefscope.review.scoring import Score
from beliefscope.store.review_tables import (
    FLAG_CATEGORIES,
    FLAG_STATES,
    Flag,
    FlagHistory,
    MetricColumn,
    ProbeSummary,
    ReviewRule,
    ReviewScore,
)
from beliefscope.store.tables import STEP_METRICS, Checkpoint, Episode, Trace, steps, utcnow
from beliefscope.store.values import Page

if TYPE_CHECKING:
    from beliefscope.store.engine import Store

MAX_LIMIT = 10_000
_CHUNK = 500
"""Ids per `IN (...)` list: well under SQLite's bound-parameter limit."""


# -- values ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleInfo:
    id: int
    rule: Rule
    created: datetime
    created_by: str


@dataclass(frozen=True)
class FlagInfo:
    id: int
    trace_id: int
    checkpoint_id: int
    episode_id: int
    probe: str
    t0: int
    t1: int
    source: str  # "rule" or "manual"
    rule_name: str | None
    rule_version: int | None
    peak: float | None
    peak_t: int | None
    severity: str
    state: str  # open, confirmed, dismissed
    category: str | None
    tags: tuple[str, ...]
    notes: str
    reviewed: bool
    stale: bool  # a reviewed rule flag the rule's current version no longer finds
    created: datetime
    updated: datetime
    updated_by: str


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    flag_id: int
    at: datetime
    who: str
    action: str  # create, review, rule-update, stale, revived
    changes: dict[str, list[Any]]


@dataclass(frozen=True)
class ApplyResult:
    rule: str
    version: int
    traces: int
    steps: int
    created: int
    updated: int
    stale: int
    deleted: int
    read_s: float
    compute_s: float
    write_s: float


@dataclass(frozen=True)
class EpisodePriority:
    episode_id: int
    episode_key: str
    trace_id: int
    score: float
    count: int
    peak: float
    duration: int


@dataclass(frozen=True)
class ScoreInfo:
    id: int
    checkpoint_id: int
    step: int | None
    rules: tuple[str, ...]
    score: Score
    created: datetime
    split: str = "all"
    """`all`, `train` (the episodes the checkpoint trained on) or `held-out` (the others)."""


@dataclass(frozen=True, eq=False)
class MetricColumns:
    """One metric of many traces, concatenated in trace-id order (see `review.segments`)."""

    trace_ids: np.ndarray  # (n,) int64
    checkpoint_ids: np.ndarray  # (n,)
    episode_ids: np.ndarray  # (n,)
    offsets: np.ndarray  # (n + 1,)
    values: np.ndarray  # (N,) float64, NaN where not finite-stored or not computed


# -- rules -------------------------------------------------------------------------------


def _rule_info(row: Any) -> RuleInfo:
    data = {k: getattr(row, k) for k in Rule.__dataclass_fields__}
    return RuleInfo(row.id, Rule(**data), row.created, row.created_by)


def list_rules(
    store: Store, *, name: str | None = None, all_versions: bool = False
) -> tuple[RuleInfo, ...]:
    """The newest version of each rule (or every version), by name then version."""
    query = sa.select(ReviewRule.__table__)
    if name is not None:
        query = query.where(ReviewRule.name == name)
    if not all_versions:
        newest = (
            sa.select(ReviewRule.name, sa.func.max(ReviewRule.version).label("v"))
            .group_by(ReviewRule.name)
            .subquery()
        )
        query = query.join(
            newest, sa.and_(ReviewRule.name == newest.c.name, ReviewRule.version == newest.c.v)
        )
    with store.connect() as conn:
        rows = conn.execute(query.order_by(ReviewRule.name, ReviewRule.version)).all()
    return tuple(_rule_info(r) for r in rows)


def get_rule(store: Store, *, name: str, version: int | None = None) -> RuleInfo:
    query = sa.select(ReviewRule.__table__).where(ReviewRule.name == name)
    query = query.where(ReviewRule.version == version) if version is not None else query
    with store.connect() as conn:
        row = conn.execute(query.order_by(ReviewRule.version.desc()).limit(1)).first()
    if row is None:
        suffix = f" version {version}" if version is not None else ""
        raise NotFoundError(f"no rule named {name!r}{suffix}")
    return _rule_info(row)


def save_rule(store: Store, *, rule: Rule, who: str) -> RuleInfo:
    """Store `rule` as a new version of its name, unless the newest version already says the
    same (then that one is returned): editing never rewrites a version flags refer to."""
    with store.connect(write=True) as conn:
        row = conn.execute(
            sa.select(ReviewRule.__table__)
            .where(ReviewRule.name == rule.name)
            .order_by(ReviewRule.version.desc())
            .limit(1)
        ).first()
        if row is not None and _rule_info(row).rule.definition() == rule.definition():
            return _rule_info(row)
        version = 1 if row is None else row.version + 1
        values = {**rule.definition(), "version": version, "created": utcnow(), "created_by": who}
        new_id = conn.execute(sa.insert(ReviewRule).values(**values).returning(ReviewRule.id))
        rule_id = int(new_id.scalar_one())
        created = conn.execute(
            sa.select(ReviewRule.__table__).where(ReviewRule.id == rule_id)
        ).one()
        return _rule_info(created)


def set_rule(store: Store, *, name: str, changes: Mapping[str, Any], who: str) -> RuleInfo:
    """Create or edit a rule from loose values (CLI strings, a JSON body): the newest version
    plus `changes`, validated before anything is written (a bad value saves nothing)."""
    if "version" in changes or "name" in changes and changes["name"] != name:
        raise BadInputError("rule: 'name' and 'version' cannot be changed")
    try:
        current: Rule | None = get_rule(store, name=name).rule
    except NotFoundError:  # a shipped rule not stored yet is edited from its default
        current = next((r for r in DEFAULT_RULES if r.name == name), None)
    rule = make_rule({"name": name, **changes}) if current is None else edit_rule(current, changes)
    return save_rule(store, rule=rule, who=who)


def ensure_default_rules(store: Store, *, who: str = "beliefscope") -> tuple[RuleInfo, ...]:
    """Store the shipped rules whose names are not stored yet (never overrides an edit)."""
    known = {info.rule.name for info in list_rules(store)}
    for rule in DEFAULT_RULES:
        if rule.name not in known:
            save_rule(store, rule=rule, who=who)
    return list_rules(store)


# -- bulk metric columns -----------------------------------------------------------------


def _trace_scope(
    *, probe: str, posterior: str, run_id: int | None, checkpoint_ids: Sequence[int] | None
) -> list[Any]:
    """WHERE conditions selecting the traces a rule reads."""
    conditions = [Trace.probe == probe, Trace.posterior == posterior]
    if checkpoint_ids is not None:
        conditions.append(Trace.checkpoint_id.in_(list(checkpoint_ids)))
    if run_id is not None:
        conditions.append(
            Trace.checkpoint_id.in_(sa.select(Checkpoint.id).where(Checkpoint.run_id == run_id))
        )
    return conditions


def read_metric_columns(
    store: Store,
    *,
    metric: str,
    probe: str = "filter",
    posterior: str = "mode",
    run_id: int | None = None,
    checkpoint_ids: Sequence[int] | None = None,
) -> MetricColumns:
    """One metric column of every matching trace, in trace-id order. Columns come from
    `metric_columns` blobs; traces read for the first time are read from their step rows in
    bulk and their blobs written, so the next rule change reads only blobs."""
    if metric not in STEP_METRICS:
        raise BadInputError(f"unknown metric {metric!r}; known: {', '.join(STEP_METRICS)}")
    scope = _trace_scope(
        probe=probe, posterior=posterior, run_id=run_id, checkpoint_ids=checkpoint_ids
    )
    traces_q = (
        sa.select(Trace.id, Trace.checkpoint_id, Trace.episode_id, Trace.length)
        .where(*scope)
        .order_by(Trace.id)
    )
    blobs_q = sa.select(MetricColumn.trace_id, MetricColumn.data).where(
        MetricColumn.metric == metric,
        MetricColumn.trace_id.in_(sa.select(Trace.id).where(*scope)),
    )
    with store.connect() as conn:
        traces = conn.execute(traces_q).all()
        cached = {
            trace_id: np.frombuffer(data, dtype="<f8") for trace_id, data in conn.execute(blobs_q)
        }
    table = np.array([tuple(r) for r in traces], dtype=np.int64).reshape(len(traces), 4)  # (n, 4)
    missing = [int(i) for i in table[:, 0] if int(i) not in cached]
    if missing:
        cached.update(_cache_columns(store, metric, missing))
    parts = [cached[int(i)] for i in table[:, 0]]
    for (trace_id, length), part in zip(table[:, [0, 3]].tolist(), parts, strict=True):
        assert len(part) == length, f"trace {trace_id}: {len(part)} stored steps, length {length}"
    values = np.concatenate(parts) if parts else np.zeros(0)
    offsets = np.concatenate(([0], np.cumsum(table[:, 3]))).astype(np.int64)
    return MetricColumns(table[:, 0], table[:, 1], table[:, 2], offsets, values)


def _cache_columns(store: Store, metric: str, trace_ids: list[int]) -> dict[int, np.ndarray]:
    """Read `metric` of these traces from their step rows and store the column blobs."""
    out: dict[int, np.ndarray] = {}
    for ids in _chunks(trace_ids):
        query = (
            sa.select(steps.c.trace_id, steps.c[metric])
            .where(steps.c.trace_id.in_(ids))
            .order_by(steps.c.trace_id, steps.c.t)
        )
        with store.connect() as conn:
            rows = conn.execute(query).all()
        # plain tuples: numpy probing SQLAlchemy rows for array interfaces is ~20x slower
        table = np.array([tuple(r) for r in rows], dtype=np.float64).reshape(len(rows), 2)  # (n, 2)
        owner = table[:, 0].astype(np.int64)
        cuts = np.flatnonzero(np.diff(owner)) + 1
        for chunk in np.split(np.arange(len(owner)), cuts):
            if len(chunk):
                out[int(owner[chunk[0]])] = np.ascontiguousarray(table[chunk, 1])
        for trace_id in ids:
            out.setdefault(trace_id, np.zeros(0))
        with store.connect(write=True) as conn:
            insert = sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert
            conn.execute(
                insert(MetricColumn).on_conflict_do_nothing(),
                [
                    {"trace_id": i, "metric": metric, "data": out[i].astype("<f8").tobytes()}
                    for i in ids
                ],
            )
    return out


# -- applying rules ----------------------------------------------------------------------


def apply_rule(
    store: Store,
    *,
    name: str,
    who: str,
    version: int | None = None,
    run_id: int | None = None,
    checkpoint_ids: Sequence[int] | None = None,
) -> ApplyResult:
    """Recompute the flags of rule `name` (newest version unless given) over its probe's
    traces in scope, keeping every human review (see the module doc)."""
    info = get_rule(store, name=name, version=version)
    rule = info.rule
    started = time.perf_counter()
    cols = read_metric_columns(
        store, metric=rule.metric, probe=rule.probe, run_id=run_id, checkpoint_ids=checkpoint_ids
    )
    read_done = time.perf_counter()
    if rule.enabled:
        found = segments.apply_rule(rule, cols.values, cols.offsets, cols.checkpoint_ids)
    else:  # a disabled rule finds nothing: its unreviewed flags go, reviewed ones turn stale
        found = segments.apply_rule(rule, cols.values[:0], np.zeros(1, np.int64))
    computed = time.perf_counter()
    counts = _write_flags(store, info, cols, found, who)
    return ApplyResult(
        rule.name,
        rule.version,
        len(cols.trace_ids),
        len(cols.values),
        *counts,
        read_s=read_done - started,
        compute_s=computed - read_done,
        write_s=time.perf_counter() - computed,
    )


def apply_rules(
    store: Store,
    *,
    who: str,
    run_id: int | None = None,
    checkpoint_ids: Sequence[int] | None = None,
) -> tuple[ApplyResult, ...]:
    """Apply the newest version of every stored rule (disabled ones clear their open flags)."""
    return tuple(
        apply_rule(store, name=i.rule.name, who=who, run_id=run_id, checkpoint_ids=checkpoint_ids)
        for i in list_rules(store)
    )


def _chunks(ids: Sequence[int]) -> Iterable[list[int]]:
    for i in range(0, len(ids), _CHUNK):
        yield [int(x) for x in ids[i : i + _CHUNK]]


def _write_flags(
    store: Store, info: RuleInfo, cols: MetricColumns, found: segments.Segments, who: str
) -> tuple[int, int, int, int]:
    """Match new segments to the rule's existing flags and write the difference."""
    rule = info.rule
    new_trace = cols.trace_ids[found.trace]
    now = utcnow()
    with store.connect(write=True) as conn:
        old: dict[int, list[Any]] = defaultdict(list)
        for ids in _chunks(cols.trace_ids.tolist()):
            rows = conn.execute(
                sa.select(Flag.id, Flag.trace_id, Flag.t0, Flag.t1, Flag.reviewed, Flag.stale)
                .where(Flag.trace_id.in_(ids), Flag.rule_name == rule.name, Flag.source == "rule")
                .order_by(Flag.t0)
            )
            for row in rows:
                old[row.trace_id].append(row)
        taken: set[int] = set()
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        history: list[dict[str, Any]] = []
        for i in range(len(found)):
            trace_id, t0, t1 = int(new_trace[i]), int(found.t0[i]), int(found.t1[i])
            values = {
                "t0": t0,
                "t1": t1,
                "peak": _nullable(found.peak[i]),
                "peak_t": int(found.peak_t[i]),
                "severity": rule.severity,
                "rule_id": info.id,
            }
            match = _best_overlap(old.get(trace_id, ()), t0, t1, taken)
            if match is None:
                inserts.append(
                    {
                        **values,
                        "trace_id": trace_id,
                        "source": "rule",
                        "rule_name": rule.name,
                        "state": "open",
                        "tags": [],
                        "notes": "",
                        "reviewed": False,
                        "stale": False,
                        "created": now,
                        "updated": now,
                        "updated_by": who,
                    }
                )
                continue
            taken.add(match.id)
            updates.append({**values, "b_id": match.id, "stale": False})
            moved = (match.t0, match.t1) != (t0, t1)
            if match.reviewed and (moved or match.stale):
                changes: dict[str, list[Any]] = {}
                if moved:
                    changes = {"t0": [match.t0, t0], "t1": [match.t1, t1]}
                if match.stale:
                    changes["stale"] = [True, False]
                history.append(_history(match.id, who, "rule-update", changes, now))
        gone = [f for flags in old.values() for f in flags if f.id not in taken]
        to_delete = [f.id for f in gone if not f.reviewed]
        to_stale = [f.id for f in gone if f.reviewed and not f.stale]
        if updates:
            conn.execute(
                sa.update(Flag)
                .where(Flag.id == sa.bindparam("b_id"))
                .values({k: sa.bindparam(k) for k in updates[0] if k != "b_id"}),
                updates,
            )
        if inserts:
            conn.execute(sa.insert(Flag), inserts)
        for ids in _chunks(to_delete):
            conn.execute(sa.delete(FlagHistory).where(FlagHistory.flag_id.in_(ids)))
            conn.execute(sa.delete(Flag).where(Flag.id.in_(ids)))
        for ids in _chunks(to_stale):
            conn.execute(sa.update(Flag).where(Flag.id.in_(ids)).values(stale=True))
        history += [_history(i, who, "stale", {"stale": [False, True]}, now) for i in to_stale]
        if history:
            conn.execute(sa.insert(FlagHistory), history)
    return len(inserts), len(updates), len(to_stale), len(to_delete)


def _best_overlap(candidates: Iterable[Any], t0: int, t1: int, taken: set[int]) -> Any | None:
    best, best_len = None, 0
    for flag in candidates:
        overlap = min(t1, flag.t1) - max(t0, flag.t0) + 1
        if overlap > best_len and flag.id not in taken:
            best, best_len = flag, overlap
    return best


def _nullable(value: float) -> float | None:
    """NaN as NULL (SQLite would do it anyway; PostgreSQL must agree)."""
    return None if math.isnan(value) else float(value)


def _history(flag_id: int, who: str, action: str, changes: dict[str, Any], at: datetime) -> dict:
    return {"flag_id": flag_id, "who": who, "action": action, "changes": changes, "at": at}


# -- flags -------------------------------------------------------------------------------

_FLAGS = (
    sa.select(
        Flag.__table__,
        Trace.checkpoint_id,
        Trace.episode_id,
        Trace.probe,
        ReviewRule.version.label("rule_version"),
    )
    .join(Trace, Trace.id == Flag.trace_id)
    .outerjoin(ReviewRule, ReviewRule.id == Flag.rule_id)
)


def _flag_info(row: Any) -> FlagInfo:
    f = row
    return FlagInfo(
        id=f.id,
        trace_id=f.trace_id,
        checkpoint_id=row.checkpoint_id,
        episode_id=row.episode_id,
        probe=row.probe,
        t0=f.t0,
        t1=f.t1,
        source=f.source,
        rule_name=f.rule_name,
        rule_version=row.rule_version,
        peak=f.peak,
        peak_t=f.peak_t,
        severity=f.severity,
        state=f.state,
        category=f.category,
        tags=tuple(f.tags or ()),
        notes=f.notes,
        reviewed=f.reviewed,
        stale=f.stale,
        created=f.created,
        updated=f.updated,
        updated_by=f.updated_by,
    )


def list_flags(
    store: Store,
    *,
    run_id: int | None = None,
    checkpoint_id: int | None = None,
    episode_id: int | None = None,
    trace_id: int | None = None,
    state: str | None = None,
    category: str | None = None,
    severity: str | None = None,
    rule_name: str | None = None,
    source: str | None = None,
    include_stale: bool = True,
    after_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Page[FlagInfo]:
    """Flags matching every given filter, by trace then start step (by id with `after_id`,
    which lists the flags newer than one already seen, e.g. for webhooks)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise BadInputError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if state is not None and state not in FLAG_STATES:
        raise BadInputError(f"unknown review state {state!r}; use one of {list(FLAG_STATES)}")
    query = _FLAGS
    for column, value in (
        (Trace.checkpoint_id, checkpoint_id),
        (Trace.episode_id, episode_id),
        (Flag.trace_id, trace_id),
        (Flag.state, state),
        (Flag.category, category),
        (Flag.severity, severity),
        (Flag.rule_name, rule_name),
        (Flag.source, source),
    ):
        if value is not None:
            query = query.where(column == value)
    if run_id is not None:
        query = query.where(
            Trace.checkpoint_id.in_(sa.select(Checkpoint.id).where(Checkpoint.run_id == run_id))
        )
    if not include_stale:
        query = query.where(Flag.stale.is_(False))
    if after_id is not None:
        query = query.where(Flag.id > after_id).order_by(Flag.id)
    else:
        query = query.order_by(Flag.trace_id, Flag.t0, Flag.id)
    count = sa.select(sa.func.count()).select_from(query.order_by(None).subquery())
    with store.connect() as conn:
        total = conn.execute(count).scalar_one()
        rows = conn.execute(query.limit(limit).offset(offset)).all()
    return Page(tuple(_flag_info(r) for r in rows), int(total), limit, offset)


def get_flag(store: Store, *, flag_id: int) -> FlagInfo:
    with store.connect() as conn:
        row = conn.execute(_FLAGS.where(Flag.id == flag_id)).first()
    if row is None:
        raise NotFoundError(f"no flag with id {flag_id}")
    return _flag_info(row)


def _check_review(state: str | None, category: str | None, tags: Sequence[str] | None) -> None:
    if state is not None and state not in FLAG_STATES:
        raise BadInputError(f"unknown review state {state!r}; use one of {list(FLAG_STATES)}")
    if category is not None and category not in FLAG_CATEGORIES:
        raise BadInputError(
            f"unknown category {category!r}; use one of {list(FLAG_CATEGORIES)} (free tags go "
            "in tags)"
        )
    if tags is not None and (isinstance(tags, str) or not all(isinstance(t, str) for t in tags)):
        raise BadInputError("tags must be a list of strings")


def create_manual_flag(
    store: Store,
    *,
    trace_id: int,
    t0: int,
    t1: int,
    who: str,
    severity: str = "medium",
    state: str = "open",
    category: str | None = None,
    tags: Sequence[str] = (),
    notes: str = "",
) -> FlagInfo:
    """A flag a person drew over steps t0..t1; its peak is taken from the trace's KL."""
    _check_review(state, category, tags)
    if severity not in ("low", "medium", "high"):
        raise BadInputError(f"unknown severity {severity!r}; use low, medium or high")
    now = utcnow()
    with store.connect(write=True) as conn:
        length = conn.execute(sa.select(Trace.length).where(Trace.id == trace_id)).scalar()
        if length is None:
            raise NotFoundError(f"no trace with id {trace_id}")
        if not 0 <= t0 <= t1 < length:
            raise BadInputError(f"flag span {t0}..{t1} is not within the trace's 0..{length - 1}")
        kl = conn.execute(
            sa.select(steps.c.t, steps.c.kl)
            .where(steps.c.trace_id == trace_id, steps.c.t.between(t0, t1))
            .order_by(steps.c.t)
        ).all()
        peak_at, peak = _manual_peak(kl)
        flag_id = conn.execute(
            sa.insert(Flag)
            .values(
                trace_id=trace_id,
                t0=t0,
                t1=t1,
                source="manual",
                rule_name=None,
                rule_id=None,
                peak=peak,
                peak_t=peak_at,
                severity=severity,
                state=state,
                category=category,
                tags=list(tags),
                notes=notes,
                reviewed=True,
                stale=False,
                created=now,
                updated=now,
                updated_by=who,
            )
            .returning(Flag.id)
        ).scalar_one()
        changes = {"t0": [None, t0], "t1": [None, t1], "state": [None, state]}
        conn.execute(
            sa.insert(FlagHistory).values(**_history(flag_id, who, "create", changes, now))
        )
    return get_flag(store, flag_id=flag_id)


def _manual_peak(rows: Sequence[Any]) -> tuple[int | None, float | None]:
    best = [(v, t) for t, v in rows if v is not None and not math.isnan(v)]
    if not best:
        return None, None
    value, t = max(best, key=lambda p: (p[0], -p[1]))
    return int(t), float(value)


def review_flag(
    store: Store,
    *,
    flag_id: int,
    who: str,
    state: str | None = None,
    category: str | None = None,
    tags: Sequence[str] | None = None,
    notes: str | None = None,
    clear_category: bool = False,
) -> FlagInfo:
    """Change a flag's review fields (None leaves a field as it is). One transaction with the
    row locked: concurrent reviews queue, each history row shows what it changed from."""
    _check_review(state, category, tags)
    wanted: dict[str, Any] = {}
    if state is not None:
        wanted["state"] = state
    if category is not None or clear_category:
        wanted["category"] = category
    if tags is not None:
        wanted["tags"] = list(dict.fromkeys(t.strip() for t in tags if t.strip()))
    if notes is not None:
        wanted["notes"] = notes
    now = utcnow()
    with store.connect(write=True) as conn:
        row = conn.execute(
            sa.select(Flag.state, Flag.category, Flag.tags, Flag.notes)
            .where(Flag.id == flag_id)
            .with_for_update()
        ).first()
        if row is None:
            raise NotFoundError(f"no flag with id {flag_id}")
        current = row._asdict()
        changes = {k: [current[k], v] for k, v in wanted.items() if current[k] != v}
        if changes:
            conn.execute(
                sa.update(Flag)
                .where(Flag.id == flag_id)
                .values(**wanted, reviewed=True, updated=now, updated_by=who)
            )
            conn.execute(
                sa.insert(FlagHistory).values(**_history(flag_id, who, "review", changes, now))
            )
    return get_flag(store, flag_id=flag_id)


def delete_manual_flag(store: Store, *, flag_id: int) -> None:
    """Remove a manual flag (rule flags are removed by their rule, never by hand)."""
    with store.connect(write=True) as conn:
        source = conn.execute(sa.select(Flag.source).where(Flag.id == flag_id)).scalar()
        if source is None:
            raise NotFoundError(f"no flag with id {flag_id}")
        if source != "manual":
            raise BadInputError(f"flag {flag_id} comes from a rule: dismiss it instead")
        conn.execute(sa.delete(FlagHistory).where(FlagHistory.flag_id == flag_id))
        conn.execute(sa.delete(Flag).where(Flag.id == flag_id))


def flag_history(store: Store, *, flag_id: int) -> tuple[HistoryEntry, ...]:
    """A flag's history, oldest first."""
    get_flag(store, flag_id=flag_id)
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(FlagHistory.__table__)
            .where(FlagHistory.flag_id == flag_id)
            .order_by(FlagHistory.id)
        ).all()
        return tuple(
            HistoryEntry(r.id, r.flag_id, r.at, r.who, r.action, dict(r.changes)) for r in rows
        )


# -- episode review queue ----------------------------------------------------------------


def review_queue(
    store: Store, *, checkpoint_id: int, probe: str = "filter", limit: int = 50
) -> tuple[EpisodePriority, ...]:
    """Episodes of a checkpoint ranked by review priority (from their non-dismissed flags);
    episodes without flags are left out."""
    query = (
        sa.select(
            Flag.t0,
            Flag.t1,
            Flag.peak,
            Flag.severity,
            Flag.state,
            Trace.id.label("trace_id"),
            Episode.id.label("episode_id"),
            Episode.key,
        )
        .join(Trace, Trace.id == Flag.trace_id)
        .join(Episode, Episode.id == Trace.episode_id)
        .where(Trace.checkpoint_id == checkpoint_id, Trace.probe == probe)
    )
    with store.connect() as conn:
        rows = conn.execute(query).all()
    by_episode: dict[tuple[int, str, int], list[FlagSummary]] = defaultdict(list)
    for r in rows:
        by_episode[(r.episode_id, r.key, r.trace_id)].append(
            FlagSummary(r.t0, r.t1, r.peak, r.severity, r.state)
        )
    ranked = []
    for (episode_id, key, trace_id), flags in by_episode.items():
        p = priority(flags)
        if p.count:
            ranked.append(
                EpisodePriority(episode_id, key, trace_id, p.score, p.count, p.peak, p.duration)
            )
    ranked.sort(key=lambda e: (-e.score, e.episode_id))
    return tuple(ranked[:limit])


def episode_priorities(
    store: Store, *, checkpoint_id: int, probe: str = "filter"
) -> dict[int, float]:
    """Every flagged episode's priority score (episode id -> score) for one checkpoint."""
    queue = review_queue(store, checkpoint_id=checkpoint_id, probe=probe, limit=10**9)
    return {e.episode_id: e.score for e in queue}


# -- chronic findings --------------------------------------------------------------------


def _correction_scale(config: Mapping[str, Any]) -> float | None:
    """The largest L1 correction a categorical latent allows: 2 per group."""
    groups, classes = config.get("groups"), config.get("classes")
    if isinstance(groups, int) and isinstance(classes, int) and classes > 1:
        return 2.0 * groups
    return None


def run_findings(
    store: Store,
    *,
    run_id: int,
    probe: str = "filter",
    params: diagnostics.DiagnosticParams | None = None,
) -> tuple[diagnostics.Finding, ...]:
    """Chronic findings of a run's checkpoints (computed from stored correction, not stored)."""
    cols = read_metric_columns(store, metric="correction", probe=probe, run_id=run_id)
    with store.connect() as conn:
        ckpts = conn.execute(
            sa.select(Checkpoint.id, Checkpoint.step, Checkpoint.config).where(
                Checkpoint.run_id == run_id
            )
        ).all()
    params = params or diagnostics.DiagnosticParams()
    columns, unscaled = [], []
    for ckpt in ckpts:
        idx = np.flatnonzero(cols.checkpoint_ids == ckpt.id)
        if not len(idx):
            continue
        parts = [cols.values[cols.offsets[i] : cols.offsets[i + 1]] for i in idx]
        offsets = np.concatenate(([0], np.cumsum([len(p) for p in parts]))).astype(np.int64)
        scale = _correction_scale(ckpt.config or {})
        columns.append(
            diagnostics.CheckpointColumn(
                ckpt.id, ckpt.step, np.concatenate(parts), offsets, scale or 1.0
            )
        )
        if scale is None:
            unscaled.append(ckpt.id)
    findings = [
        f
        for c in columns
        if c.checkpoint not in unscaled
        for f in diagnostics.checkpoint_findings(c, params)
    ]
    collapsed = {f.checkpoint for f in findings if f.kind == "collapse"}
    findings += diagnostics.trend_findings(columns, collapsed, params)
    return tuple(findings)


# -- scores and probe summaries ----------------------------------------------------------


SPLITS = ("all", "train", "held-out")


def save_score(
    store: Store,
    *,
    checkpoint_id: int,
    score: Score,
    rules: Sequence[str],
    split: str = "all",
) -> ScoreInfo:
    assert split in SPLITS, split
    values = {
        k: _nullable(v) if isinstance(v, float) else v
        for k, v in asdict(score).items()
        if k != "intervals"
    }
    intervals = {k: [_nullable(lo), _nullable(hi)] for k, (lo, hi) in score.intervals.items()}
    with store.connect(write=True) as conn:
        new_id = conn.execute(
            sa.insert(ReviewScore)
            .values(
                checkpoint_id=checkpoint_id,
                rules=list(rules),
                created=utcnow(),
                intervals=intervals,
                split=split,
                **values,
            )
            .returning(ReviewScore.id)
        ).scalar_one()
    found = list_scores(store, checkpoint_id=checkpoint_id, split=split)
    return next(s for s in found if s.id == new_id)


def list_scores(
    store: Store,
    *,
    run_id: int | None = None,
    checkpoint_id: int | None = None,
    latest: bool = True,
    split: str | None = "all",
) -> tuple[ScoreInfo, ...]:
    """Scores by checkpoint step; with `latest`, only each checkpoint's newest per split;
    `split` None gives every split."""
    query = sa.select(ReviewScore.__table__, Checkpoint.step).join(
        Checkpoint, Checkpoint.id == ReviewScore.checkpoint_id
    )
    if run_id is not None:
        query = query.where(Checkpoint.run_id == run_id)
    if checkpoint_id is not None:
        query = query.where(ReviewScore.checkpoint_id == checkpoint_id)
    if split is not None:
        query = query.where(ReviewScore.split == split)
    with store.connect() as conn:
        rows = conn.execute(query.order_by(ReviewScore.id)).all()
    out: dict[tuple[int, str], ScoreInfo] = {}
    listed = []
    nan = float("nan")
    for row in rows:
        names = [k for k in Score.__dataclass_fields__ if k != "intervals"]
        fields: dict[str, Any] = {
            k: nan if getattr(row, k) is None else getattr(row, k) for k in names
        }
        intervals = {
            k: (nan if lo is None else lo, nan if hi is None else hi)
            for k, (lo, hi) in (row.intervals or {}).items()
        }
        info = ScoreInfo(
            row.id,
            row.checkpoint_id,
            row.step,
            tuple(row.rules),
            Score(**fields, intervals=intervals),
            row.created,
            row.split,
        )
        out[(row.checkpoint_id, row.split)] = info
        listed.append(info)
    chosen = list(out.values()) if latest else listed
    order = {name: i for i, name in enumerate(SPLITS)}
    return tuple(
        sorted(
            chosen,
            key=lambda s: (s.step is None, s.step or 0, s.checkpoint_id, order[s.split], s.id),
        )
    )


def save_probe_summary(
    store: Store, *, checkpoint_id: int, probe: str, data: Mapping[str, Any]
) -> None:
    """Replace a checkpoint's summary of `probe` (e.g. `horizon`, `decode`)."""
    with store.connect(write=True) as conn:
        conn.execute(
            sa.delete(ProbeSummary).where(
                ProbeSummary.checkpoint_id == checkpoint_id, ProbeSummary.probe == probe
            )
        )
        conn.execute(
            sa.insert(ProbeSummary).values(
                checkpoint_id=checkpoint_id, probe=probe, data=dict(data), created=utcnow()
            )
        )


def get_probe_summary(store: Store, *, checkpoint_id: int, probe: str) -> dict[str, Any]:
    with store.connect() as conn:
        data = conn.execute(
            sa.select(ProbeSummary.data).where(
                ProbeSummary.checkpoint_id == checkpoint_id, ProbeSummary.probe == probe
            )
        ).scalar()
    if data is None:
        raise NotFoundError(f"checkpoint {checkpoint_id} has no {probe!r} probe summary")
    return dict(data)
