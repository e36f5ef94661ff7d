"""Flag rules: list, create, edit (a new version each time), apply; writes need `admin`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from beliefscope.values.review import RuleInfo
from server.deps import MAX_ID, AdminDep, ContextDep, IdQuery
from server.schemas import (
    ApplyPublic,
    RuleApply,
    RuleCreate,
    RulePublic,
    RulesPublic,
    RuleWrite,
    ThresholdPublic,
)

router = APIRouter(prefix="/rules", tags=["rules"])
RuleName = Annotated[str, Path(min_length=1, max_length=100)]


def _public(info: RuleInfo) -> RulePublic:
    return RulePublic.model_validate(
        {**asdict(info.rule), "id": info.id, "created": info.created, "created_by": info.created_by}
    )


@router.get("")
def list_rules(ctx: ContextDep, all_versions: bool = False) -> RulesPublic:
    found = ctx.store.reviews.list_rules(all_versions=all_versions)
    return RulesPublic(data=[_public(i) for i in found], count=len(found))


@router.post("", status_code=status.HTTP_201_CREATED)
def create_rule(ctx: ContextDep, who: AdminDep, body: RuleCreate) -> RulePublic:
    assert who.name is not None
    changes: dict[str, Any] = body.model_dump(exclude_none=True, exclude={"name"})
    info = ctx.reviews.set_rule(name=body.name, changes=changes, who=who.name)
    return _public(info)


@router.get("/{name}")
def get_rule(ctx: ContextDep, name: RuleName, version: IdQuery = None) -> RulePublic:
    return _public(ctx.store.reviews.get_rule(name=name, version=version))


@router.get("/{name}/threshold")
def rule_threshold(
    ctx: ContextDep,
    name: RuleName,
    trace_id: Annotated[int, Query(ge=1, le=MAX_ID)],
    version: IdQuery = None,
) -> ThresholdPublic:
    """The raw metric level the rule (newest version unless given) holds a trace to: robust
    thresholds over the trace's checkpoint, episode normalisation undone, the floor applied."""
    info = ctx.store.reviews.get_rule(name=name, version=version)
    trace = ctx.store.queries.get_trace(trace_id=trace_id)
    rule = info.rule
    return ThresholdPublic(
        rule=rule.name,
        version=rule.version,
        metric=rule.metric,
        trace_id=trace.id,
        threshold=ctx.reviews.effective_threshold(rule, trace),
    )


@router.patch("/{name}")
def edit_rule(ctx: ContextDep, who: AdminDep, name: RuleName, body: RuleWrite) -> RulePublic:
    """Store the rule with these changes as its next version (flags keep their version)."""
    assert who.name is not None
    ctx.store.reviews.get_rule(name=name)  # editing needs an existing rule: 404 if not
    changes = body.model_dump(exclude_none=True)
    return _public(ctx.reviews.set_rule(name=name, changes=changes, who=who.name))


@router.post("/{name}/apply")
def apply_rule(
    ctx: ContextDep, who: AdminDep, name: RuleName, body: RuleApply | None = None
) -> ApplyPublic:
    """Recompute the rule's flags over the stored traces in scope (human reviews survive)."""
    assert who.name is not None
    scope = body or RuleApply()
    result = ctx.reviews.apply_rule(
        name=name,
        who=who.name,
        run_id=scope.run_id,
        checkpoint_ids=scope.checkpoint_ids,
    )
    return ApplyPublic.model_validate(result)
