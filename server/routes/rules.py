"""Flag rules: list, create, edit (a new version each time), apply."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path, status

from beliefscope.store import review_store
from beliefscope.store.review_store import RuleInfo
from server.deps import ContextDep, IdQuery, WriterDep
from server.schemas import ApplyPublic, RuleApply, RuleCreate, RulePublic, RulesPublic, RuleWrite

router = APIRouter(prefix="/rules", tags=["rules"])
RuleName = Annotated[str, Path(min_length=1, max_length=100)]


def _public(info: RuleInfo) -> RulePublic:
    return RulePublic.model_validate(
        {**asdict(info.rule), "id": info.id, "created": info.created, "created_by": info.created_by}
    )


@router.get("")
def list_rules(ctx: ContextDep, all_versions: bool = False) -> RulesPublic:
    found = review_store.list_rules(ctx.store, all_versions=all_versions)
    return RulesPublic(data=[_public(i) for i in found], count=len(found))


@router.post("", status_code=status.HTTP_201_CREATED)
def create_rule(ctx: ContextDep, who: WriterDep, body: RuleCreate) -> RulePublic:
    assert who.name is not None
    changes: dict[str, Any] = body.model_dump(exclude_none=True, exclude={"name"})
    info = review_store.set_rule(ctx.store, name=body.name, changes=changes, who=who.name)
    return _public(info)


@router.get("/{name}")
def get_rule(ctx: ContextDep, name: RuleName, version: IdQuery = None) -> RulePublic:
    return _public(review_store.get_rule(ctx.store, name=name, version=version))


@router.patch("/{name}")
def edit_rule(ctx: ContextDep, who: WriterDep, name: RuleName, body: RuleWrite) -> RulePublic:
    """Store the rule with these changes as its next version (flags keep their version)."""
    assert who.name is not None
    review_store.get_rule(ctx.store, name=name)  # editing needs an existing rule: 404 if not
    changes = body.model_dump(exclude_none=True)
    return _public(review_store.set_rule(ctx.store, name=name, changes=changes, who=who.name))


@router.post("/{name}/apply")
def apply_rule(
    ctx: ContextDep, who: WriterDep, name: RuleName, body: RuleApply | None = None
) -> ApplyPublic:
    """Recompute the rule's flags over the stored traces in scope (human reviews survive)."""
    assert who.name is not None
    scope = body or RuleApply()
    result = review_store.apply_rule(
        ctx.store,
        name=name,
        who=who.name,
        run_id=scope.run_id,
        checkpoint_ids=scope.checkpoint_ids,
    )
    return ApplyPublic.model_validate(result)
