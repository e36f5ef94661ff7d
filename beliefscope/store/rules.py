"""Versioned flag rules (`store.reviews`): a changed rule is a new row with the next version,
so a flag always names the exact version that made it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from beliefscope.errors import BadInputError, NotFoundError
from beliefscope.store.activity import record
from beliefscope.store.engine import Surface
from beliefscope.store.review_tables import ReviewRule
from beliefscope.store.sql import dialect_insert
from beliefscope.store.tables import utcnow
from beliefscope.values.review import Rule, RuleInfo, edit_rule, make_rule


class RuleTable(Surface):
    def list_rules(
        self, *, name: str | None = None, all_versions: bool = False
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
        with self._store.connect() as conn:
            rows = conn.execute(query.order_by(ReviewRule.name, ReviewRule.version)).all()
        return tuple(_rule_info(r) for r in rows)

    def get_rule(self, *, name: str, version: int | None = None) -> RuleInfo:
        query = sa.select(ReviewRule.__table__).where(ReviewRule.name == name)
        query = query.where(ReviewRule.version == version) if version is not None else query
        with self._store.connect() as conn:
            row = conn.execute(query.order_by(ReviewRule.version.desc()).limit(1)).first()
        if row is None:
            suffix = f" version {version}" if version is not None else ""
            raise NotFoundError(f"no rule named {name!r}{suffix}")
        return _rule_info(row)

    def save_rule(self, *, rule: Rule, who: str) -> RuleInfo:
        """Store `rule` as a new version of its name, unless the newest version already says
        the same (then that one is returned): editing never rewrites a version flags refer to."""
        return self._save(rule.name, who, lambda _newest: rule)

    def update_rule(
        self,
        *,
        name: str,
        changes: Mapping[str, Any],
        who: str,
        default: Rule | None = None,
    ) -> RuleInfo:
        """The newest version of `name` (else `default`, else a new rule) with `changes` from
        loose values (CLI strings, a JSON body) applied and validated, stored as the next
        version; a bad value saves nothing. Concurrent edits all land: each applies its changes
        to the version it finds newest when it writes."""
        if "version" in changes or "name" in changes and changes["name"] != name:
            raise BadInputError("rule: 'name' and 'version' cannot be changed")

        def edited(newest: Rule | None) -> Rule:
            base = newest or default
            return (
                make_rule({"name": name, **changes}) if base is None else edit_rule(base, changes)
            )

        return self._save(name, who, edited)

    def _save(self, name: str, who: str, make: Callable[[Rule | None], Rule]) -> RuleInfo:
        """Read the newest version and write `make(newest)` as the next one in one transaction.
        A version number another writer took meanwhile (PostgreSQL lets both read the same
        newest version; the unique key lets only one insert its successor) means: read again
        and rebuild on theirs, so no edit is lost."""
        while True:
            with self._store.connect(write=True) as conn:
                row = conn.execute(
                    sa.select(ReviewRule.__table__)
                    .where(ReviewRule.name == name)
                    .order_by(ReviewRule.version.desc())
                    .limit(1)
                ).first()
                newest = None if row is None else _rule_info(row)
                rule = make(None if newest is None else newest.rule)
                if newest is not None and newest.rule.definition() == rule.definition():
                    return newest
                values = {
                    **rule.definition(),
                    "version": 1 if newest is None else newest.rule.version + 1,
                    "created": utcnow(),
                    "created_by": who,
                }
                new_id = conn.execute(
                    dialect_insert(conn, ReviewRule)
                    .values(**values)
                    .on_conflict_do_nothing()
                    .returning(ReviewRule.id)
                ).scalar()
                if new_id is None:
                    continue
                created = conn.execute(
                    sa.select(ReviewRule.__table__).where(ReviewRule.id == new_id)
                ).one()
                old = {} if newest is None else newest.rule.definition()
                changes = {
                    k: [old.get(k), v] for k, v in rule.definition().items() if old.get(k) != v
                }
                record(
                    conn,
                    who=who,
                    action="rule.create" if newest is None else "rule.edit",
                    target=f"rule:{name}",
                    details={"version": values["version"], "changes": changes},
                )
                return _rule_info(created)


def _rule_info(row: Any) -> RuleInfo:
    data = {k: getattr(row, k) for k in Rule.__dataclass_fields__ if k != "variant"}
    data["variant"] = row.probe  # the column's name (see `ReviewRule.variant`)
    return RuleInfo(row.id, Rule(**data), row.created, row.created_by)
