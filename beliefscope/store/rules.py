"""Versioned flag rules (`store.reviews`): a changed rule is a new row with the next version,
so a flag always names the exact version that made it."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from beliefscope.errors import NotFoundError
from beliefscope.store.engine import Surface
from beliefscope.store.review_tables import ReviewRule
from beliefscope.store.tables import utcnow
from beliefscope.values.review import Rule, RuleInfo


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
        with self._store.connect(write=True) as conn:
            row = conn.execute(
                sa.select(ReviewRule.__table__)
                .where(ReviewRule.name == rule.name)
                .order_by(ReviewRule.version.desc())
                .limit(1)
            ).first()
            if row is not None and _rule_info(row).rule.definition() == rule.definition():
                return _rule_info(row)
            version = 1 if row is None else row.version + 1
            values = {
                **rule.definition(),
                "version": version,
                "created": utcnow(),
                "created_by": who,
            }
            new_id = conn.execute(sa.insert(ReviewRule).values(**values).returning(ReviewRule.id))
            rule_id = int(new_id.scalar_one())
            created = conn.execute(
                sa.select(ReviewRule.__table__).where(ReviewRule.id == rule_id)
            ).one()
            return _rule_info(created)


def _rule_info(row: Any) -> RuleInfo:
    data = {k: getattr(row, k) for k in Rule.__dataclass_fields__}
    return RuleInfo(row.id, Rule(**data), row.created, row.created_by)
