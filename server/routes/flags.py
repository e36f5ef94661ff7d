"""Review flags: filtered lists, manual flags, review state, notes, history, deletion.

Reviews need the `review` scope. Deleting is soft (hidden, kept with its history, logged): a
reviewer may delete a manual flag only they have worked on, anything else needs `admin`, and
only an admin reads deleted flags (`deleted=true`, or by id) and restores them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from beliefscope.access import check_may_delete
from beliefscope.errors import ForbiddenError
from beliefscope.values.access import allows
from server.deps import AdminDep, ContextDep, IdPath, IdQuery, PageDep, ReaderDep, ReviewerDep
from server.schemas import (
    Category,
    FlagCreate,
    FlagPublic,
    FlagsPublic,
    FlagState,
    FlagUpdate,
    HistoriesPublic,
    NoteCreate,
    Severity,
)

router = APIRouter(prefix="/flags", tags=["flags"])


@router.get("")
def list_flags(
    ctx: ContextDep,
    who: ReaderDep,
    page: PageDep,
    run_id: IdQuery = None,
    checkpoint_id: IdQuery = None,
    episode_id: IdQuery = None,
    trace_id: IdQuery = None,
    state: FlagState | None = None,
    category: Category | None = None,
    severity: Severity | None = None,
    rule: Annotated[str | None, Query(max_length=100)] = None,
    source: Annotated[str | None, Query(pattern="^(rule|manual)$")] = None,
    include_stale: bool = True,
    deleted: Annotated[bool, Query(description="admins: only the deleted flags")] = False,
    sort: Annotated[
        str | None,
        Query(
            max_length=200,
            description="comma-separated keys (severity, peak, t0, duration, created, updated, "
            "id), '-' for descending: `-severity,-peak` puts high severity first, by peak",
        ),
    ] = None,
) -> FlagsPublic:
    if deleted and not allows(who.scope, "admin"):
        raise ForbiddenError("only an admin can list deleted flags")
    found = ctx.store.reviews.list_flags(
        run_id=run_id,
        checkpoint_id=checkpoint_id,
        episode_id=episode_id,
        trace_id=trace_id,
        state=state,
        category=category,
        severity=severity,
        rule_name=rule,
        source=source,
        include_stale=include_stale,
        deleted=deleted,
        sort=sort,
        limit=page.limit,
        offset=page.offset,
    )
    return FlagsPublic.of(found)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_flag(ctx: ContextDep, who: ReviewerDep, body: FlagCreate) -> FlagPublic:
    """A manual flag; the reviewer is the token's name."""
    assert who.name is not None
    flag = ctx.store.reviews.create_manual_flag(who=who.name, **body.model_dump(exclude_none=False))
    return FlagPublic.model_validate(flag)


@router.get("/{flag_id}")
def get_flag(ctx: ContextDep, who: ReaderDep, flag_id: IdPath) -> FlagPublic:
    """A flag (a deleted one only for admins)."""
    admin = allows(who.scope, "admin")
    return FlagPublic.model_validate(
        ctx.store.reviews.get_flag(flag_id=flag_id, include_deleted=admin)
    )


@router.patch("/{flag_id}")
def review_flag(ctx: ContextDep, who: ReviewerDep, flag_id: IdPath, body: FlagUpdate) -> FlagPublic:
    """Change review state, category, tags or notes; history records who changed what."""
    assert who.name is not None
    flag = ctx.store.reviews.review_flag(
        flag_id=flag_id,
        who=who.name,
        state=body.state,
        category=body.category,
        clear_category=body.clear_category,
        tags=body.tags,
        notes=body.notes,
    )
    return FlagPublic.model_validate(flag)


@router.post("/{flag_id}/notes")
def add_note(ctx: ContextDep, who: ReviewerDep, flag_id: IdPath, body: NoteCreate) -> FlagPublic:
    """Append a signed line to the flag's notes."""
    assert who.name is not None
    flag = ctx.store.reviews.add_note(flag_id=flag_id, who=who.name, text=body.text)
    return FlagPublic.model_validate(flag)


@router.delete("/{flag_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_flag(ctx: ContextDep, who: ReviewerDep, flag_id: IdPath) -> None:
    """Delete a manual flag (rule flags are dismissed, not deleted): hidden and kept with its
    history; a flag others have worked on needs an admin."""
    assert who.name is not None
    check_may_delete(who, ctx.store.reviews.flag_history(flag_id=flag_id))
    ctx.store.reviews.delete_manual_flag(flag_id=flag_id, who=who.name)


@router.post("/{flag_id}/restore")
def restore_flag(ctx: ContextDep, who: AdminDep, flag_id: IdPath) -> FlagPublic:
    """Bring a deleted flag back, with its history."""
    assert who.name is not None
    return FlagPublic.model_validate(ctx.store.reviews.restore_flag(flag_id=flag_id, who=who.name))


@router.get("/{flag_id}/history")
def flag_history(ctx: ContextDep, who: ReaderDep, flag_id: IdPath) -> HistoriesPublic:
    admin = allows(who.scope, "admin")
    found = ctx.store.reviews.flag_history(flag_id=flag_id, include_deleted=admin)
    return HistoriesPublic.model_validate({"data": list(found), "count": len(found)})
