"""Flags and their review history (`store.reviews`).

Every change a person makes is also an entry of the activity log, in the same transaction.
Deleting a flag is soft: it is hidden from every list and read (a deleted id answers "no flag")
and kept with its history, so an admin can restore it. Review edits run in one write
transaction each (SQLite serialises writers, PostgreSQL locks the
row), record [old, new] per changed field in the history, and the last writer's value is the
current one. Re-applying a rule writes its `FlagPlan` in the transaction that read the rule's
existing flags, so a review that lands meanwhile is never overwritten or deleted unseen.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from beliefscope.errors import BadInputError, NotFoundError
from beliefscope.store.activity import record
from beliefscope.store.engine import Surface
from beliefscope.store.review_tables import Flag, FlagHistory, ReviewRule
from beliefscope.store.sql import chunks, nullable
from beliefscope.store.tables import Checkpoint, Episode, Run, Trace, steps, utcnow
from beliefscope.values.page import MAX_LIMIT, Page
from beliefscope.values.review import (
    FLAG_CATEGORIES,
    FLAG_STATES,
    SEVERITIES,
    FlagInfo,
    FlagPlan,
    Found,
    HistoryEntry,
    RuleFlag,
    RuleInfo,
)

_FLAGS = (
    sa.select(
        Flag.__table__,
        Trace.checkpoint_id,
        Trace.episode_id,
        Trace.variant.label("variant"),
        ReviewRule.version.label("rule_version"),
        Checkpoint.run_id,
        Run.name.label("run_name"),
        Checkpoint.step.label("checkpoint_step"),
        Episode.key.label("episode_key"),
    )
    .join(Trace, Trace.id == Flag.trace_id)
    .join(Checkpoint, Checkpoint.id == Trace.checkpoint_id)
    .join(Run, Run.id == Checkpoint.run_id)
    .join(Episode, Episode.id == Trace.episode_id)
    .outerjoin(ReviewRule, ReviewRule.id == Flag.rule_id)
)
"""Flags with their trace, its checkpoint, run and episode: one joined read for any list."""

_SEVERITY_RANK = sa.case({name: rank for rank, name in enumerate(SEVERITIES)}, value=Flag.severity)
FLAG_SORT_KEYS: dict[str, Any] = {
    "severity": _SEVERITY_RANK,
    "peak": Flag.peak,
    "t0": Flag.t0,
    "duration": Flag.t1 - Flag.t0,
    "created": Flag.created,
    "updated": Flag.updated,
    "id": Flag.id,
}
"""What a flag list can be sorted by; severity by rank (low < medium < high), not by name."""


def flag_order(sort: str) -> list[Any]:
    """ORDER BY terms of a sort spec like `-severity,-peak` (`-` descending; missing values
    last either way; ties by id)."""
    terms: list[Any] = []
    for raw in sort.split(","):
        key = raw.strip()
        descending = key.startswith("-")
        column = FLAG_SORT_KEYS.get(key.lstrip("+-"))
        if column is None:
            raise BadInputError(
                f"cannot sort flags by {key!r}; use any of {', '.join(FLAG_SORT_KEYS)}, "
                "each optionally prefixed by '-' for descending, separated by commas"
            )
        terms.append((column.desc() if descending else column.asc()).nulls_last())
    return [*terms, Flag.id]


class FlagTable(Surface):
    def list_flags(
        self,
        *,
        run_id: int | None = None,
        checkpoint_id: int | None = None,
        episode_id: int | None = None,
        trace_id: int | None = None,
        variant: str | None = None,
        state: str | None = None,
        category: str | None = None,
        severity: str | None = None,
        rule_name: str | None = None,
        source: str | None = None,
        include_stale: bool = True,
        after_id: int | None = None,
        deleted: bool = False,
        sort: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[FlagInfo]:
        """Flags matching every given filter, by trace then start step, or as `sort` says
        (`flag_order`); by id with `after_id`, which lists the flags newer than one already
        seen, e.g. for webhooks; with `deleted`, only the deleted ones (for an admin to
        restore), else never those."""
        if not 1 <= limit <= MAX_LIMIT:
            raise BadInputError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        if state is not None and state not in FLAG_STATES:
            raise BadInputError(f"unknown review state {state!r}; use one of {list(FLAG_STATES)}")
        query = _FLAGS.where(Flag.deleted.is_not(None) if deleted else Flag.deleted.is_(None))
        for column, value in (
            (Trace.checkpoint_id, checkpoint_id),
            (Trace.episode_id, episode_id),
            (Trace.variant, variant),
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
            query = query.where(Checkpoint.run_id == run_id)
        if not include_stale:
            query = query.where(Flag.stale.is_(False))
        if after_id is not None:
            query = query.where(Flag.id > after_id).order_by(Flag.id)
        elif sort:
            query = query.order_by(*flag_order(sort))
        else:
            query = query.order_by(Flag.trace_id, Flag.t0, Flag.id)
        count = sa.select(sa.func.count()).select_from(query.order_by(None).subquery())
        with self._store.connect() as conn:
            total = conn.execute(count).scalar_one()
            rows = conn.execute(query.limit(limit).offset(offset)).all()
        return Page(tuple(_flag_info(r) for r in rows), int(total), limit, offset)

    def all_flags(self, **filters: Any) -> list[FlagInfo]:
        """Every flag `list_flags` finds with these filters, page after page."""
        out: list[FlagInfo] = []
        while True:
            page = self.list_flags(**filters, limit=MAX_LIMIT, offset=len(out))
            out.extend(page.items)
            if len(out) >= page.total or not page.items:
                return out

    def get_flag(self, *, flag_id: int, include_deleted: bool = False) -> FlagInfo:
        query = _FLAGS.where(Flag.id == flag_id)
        if not include_deleted:
            query = query.where(Flag.deleted.is_(None))
        with self._store.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(f"no flag with id {flag_id}")
        return _flag_info(row)

    def create_manual_flag(
        self,
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
        if severity not in SEVERITIES:
            raise BadInputError(f"unknown severity {severity!r}; use low, medium or high")
        now = utcnow()
        with self._store.connect(write=True) as conn:
            length = conn.execute(sa.select(Trace.length).where(Trace.id == trace_id)).scalar()
            if length is None:
                raise NotFoundError(f"no trace with id {trace_id}")
            if not 0 <= t0 <= t1 < length:
                raise BadInputError(
                    f"flag span {t0}..{t1} is not within the trace's 0..{length - 1}"
                )
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
            details = {"trace_id": trace_id, **changes}
            record(conn, who=who, action="flag.create", target=f"flag:{flag_id}", details=details)
        return self.get_flag(flag_id=flag_id)

    def review_flag(
        self,
        *,
        flag_id: int,
        who: str,
        state: str | None = None,
        category: str | None = None,
        tags: Sequence[str] | None = None,
        notes: str | None = None,
        clear_category: bool = False,
    ) -> FlagInfo:
        """Change a flag's review fields (None leaves a field as it is)."""
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
        return self._review(flag_id, who, "flag.review", lambda _current: wanted)

    def add_note(self, *, flag_id: int, who: str, text: str) -> FlagInfo:
        """Append the signed line `who: text` to the flag's notes."""
        line = f"{who}: {text.strip()}"

        def appended(current: Mapping[str, Any]) -> dict[str, Any]:
            notes = current["notes"]
            return {"notes": f"{notes.rstrip()}\n{line}" if notes.strip() else line}

        return self._review(flag_id, who, "flag.note", appended)

    def _review(
        self,
        flag_id: int,
        who: str,
        action: str,
        wanted: Callable[[Mapping[str, Any]], dict[str, Any]],
    ) -> FlagInfo:
        """Write `wanted(current review fields)` in the transaction that read them, with the
        row locked: concurrent reviews queue, each builds on the one before it, and each
        history row shows what it changed from."""
        now = utcnow()
        with self._store.connect(write=True) as conn:
            row = conn.execute(
                sa.select(Flag.state, Flag.category, Flag.tags, Flag.notes)
                .where(Flag.id == flag_id, Flag.deleted.is_(None))
                .with_for_update()
            ).first()
            if row is None:
                raise NotFoundError(f"no flag with id {flag_id}")
            current = row._asdict()
            values = wanted(current)
            changes = {k: [current[k], v] for k, v in values.items() if current[k] != v}
            if changes:
                conn.execute(
                    sa.update(Flag)
                    .where(Flag.id == flag_id)
                    .values(**values, reviewed=True, updated=now, updated_by=who)
                )
                conn.execute(
                    sa.insert(FlagHistory).values(**_history(flag_id, who, "review", changes, now))
                )
                record(conn, who=who, action=action, target=f"flag:{flag_id}", details=changes)
        return self.get_flag(flag_id=flag_id)

    def delete_manual_flag(self, *, flag_id: int, who: str) -> None:
        """Delete a manual flag (rule flags are removed by their rule, never by hand): hidden,
        kept with its history, restorable."""
        self._set_deleted(flag_id, who, deleted=True)

    def restore_flag(self, *, flag_id: int, who: str) -> FlagInfo:
        """Bring a deleted flag back as it was."""
        self._set_deleted(flag_id, who, deleted=False)
        return self.get_flag(flag_id=flag_id)

    def _set_deleted(self, flag_id: int, who: str, *, deleted: bool) -> None:
        now = utcnow()
        with self._store.connect(write=True) as conn:
            row = conn.execute(
                sa.select(Flag.source, Flag.deleted).where(Flag.id == flag_id).with_for_update()
            ).first()
            if row is None or (row.deleted is None) != deleted:
                state = "" if deleted else "deleted "
                raise NotFoundError(f"no {state}flag with id {flag_id}")
            if row.source != "manual":
                raise BadInputError(f"flag {flag_id} comes from a rule: dismiss it instead")
            conn.execute(
                sa.update(Flag)
                .where(Flag.id == flag_id)
                .values(deleted=now if deleted else None, deleted_by=who if deleted else None)
            )
            action = "delete" if deleted else "restore"
            conn.execute(sa.insert(FlagHistory).values(**_history(flag_id, who, action, {}, now)))
            record(conn, who=who, action=f"flag.{action}", target=f"flag:{flag_id}")

    def flag_history(
        self, *, flag_id: int, include_deleted: bool = False
    ) -> tuple[HistoryEntry, ...]:
        """A flag's history, oldest first."""
        self.get_flag(flag_id=flag_id, include_deleted=include_deleted)
        with self._store.connect() as conn:
            rows = conn.execute(
                sa.select(FlagHistory.__table__)
                .where(FlagHistory.flag_id == flag_id)
                .order_by(FlagHistory.id)
            ).all()
            return tuple(
                HistoryEntry(r.id, r.flag_id, r.at, r.who, r.action, dict(r.changes)) for r in rows
            )

    def reconcile_rule_flags(
        self,
        *,
        rule: RuleInfo,
        trace_ids: Sequence[int],
        who: str,
        plan: Callable[[Mapping[int, Sequence[RuleFlag]]], FlagPlan],
    ) -> FlagPlan:
        """Read the rule's flags on these traces (trace id -> flags by start step), let `plan`
        decide what changes, and write that, all in one write transaction."""
        info = rule.rule
        now = utcnow()
        with self._store.connect(write=True) as conn:
            old: dict[int, list[RuleFlag]] = defaultdict(list)
            for ids in chunks(trace_ids):
                rows = conn.execute(
                    sa.select(Flag.id, Flag.trace_id, Flag.t0, Flag.t1, Flag.reviewed, Flag.stale)
                    .where(
                        Flag.trace_id.in_(ids), Flag.rule_name == info.name, Flag.source == "rule"
                    )
                    .order_by(Flag.t0)
                )
                for row in rows:
                    old[row.trace_id].append(RuleFlag(*row))
            changes = plan(old)
            common = {"severity": info.severity, "rule_id": rule.id}
            if changes.updates:
                conn.execute(
                    sa.update(Flag)
                    .where(Flag.id == sa.bindparam("b_id"))
                    .values(
                        {
                            **{k: sa.bindparam(k) for k in ("t0", "t1", "peak", "peak_t", "stale")},
                            **common,
                        }
                    ),
                    [
                        {**_bounds(found), "b_id": flag_id, "stale": False}
                        for flag_id, found in changes.updates
                    ],
                )
            if changes.inserts:
                conn.execute(
                    sa.insert(Flag),
                    [
                        {
                            **_bounds(found),
                            **common,
                            "trace_id": found.trace_id,
                            "source": "rule",
                            "rule_name": info.name,
                            "state": "open",
                            "tags": [],
                            "notes": "",
                            "reviewed": False,
                            "stale": False,
                            "created": now,
                            "updated": now,
                            "updated_by": who,
                        }
                        for found in changes.inserts
                    ],
                )
            for ids in chunks(changes.deletes):
                conn.execute(sa.delete(FlagHistory).where(FlagHistory.flag_id.in_(ids)))
                conn.execute(sa.delete(Flag).where(Flag.id.in_(ids)))
            for ids in chunks(changes.stales):
                conn.execute(sa.update(Flag).where(Flag.id.in_(ids)).values(stale=True))
            if changes.history:
                conn.execute(
                    sa.insert(FlagHistory),
                    [_history(i, who, action, diff, now) for i, action, diff in changes.history],
                )
            counts = {
                "created": len(changes.inserts),
                "updated": len(changes.updates),
                "deleted": len(changes.deletes),
                "stale": len(changes.stales),
            }
            if any(counts.values()):
                details = {"version": info.version, "traces": len(trace_ids), **counts}
                record(
                    conn, who=who, action="rule.apply", target=f"rule:{info.name}", details=details
                )
        return changes


def _bounds(found: Found) -> dict[str, Any]:
    return {"t0": found.t0, "t1": found.t1, "peak": nullable(found.peak), "peak_t": found.peak_t}


def _flag_info(row: Any) -> FlagInfo:
    return FlagInfo(
        id=row.id,
        trace_id=row.trace_id,
        checkpoint_id=row.checkpoint_id,
        episode_id=row.episode_id,
        variant=row.variant,
        t0=row.t0,
        t1=row.t1,
        source=row.source,
        rule_name=row.rule_name,
        rule_version=row.rule_version,
        peak=row.peak,
        peak_t=row.peak_t,
        severity=row.severity,
        state=row.state,
        category=row.category,
        tags=tuple(row.tags or ()),
        notes=row.notes,
        reviewed=row.reviewed,
        stale=row.stale,
        created=row.created,
        updated=row.updated,
        updated_by=row.updated_by,
        deleted=row.deleted,
        deleted_by=row.deleted_by,
        run_id=row.run_id,
        run_name=row.run_name,
        checkpoint_step=row.checkpoint_step,
        episode_key=row.episode_key,
    )


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


def _manual_peak(rows: Sequence[Any]) -> tuple[int | None, float | None]:
    best = [(v, t) for t, v in rows if v is not None and not math.isnan(v)]
    if not best:
        return None, None
    value, t = max(best, key=lambda p: (p[0], -p[1]))
    return int(t), float(value)


def _history(flag_id: int, who: str, action: str, changes: dict[str, Any], at: datetime) -> dict:
    return {"flag_id": flag_id, "who": who, "action": action, "changes": changes, "at": at}
