"""The activity log (admin): every state change, who made it and when, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from server.deps import AdminDep, ContextDep, PageDep
from server.schemas import ActivitiesPublic

router = APIRouter(prefix="/activity", tags=["activity"])

Text = Annotated[str | None, Query(max_length=200)]


@router.get("")
def list_activity(
    ctx: ContextDep,
    _who: AdminDep,
    page: PageDep,
    who: Text = None,
    action: Annotated[
        str | None, Query(max_length=32, description="an action (flag.review) or family (flag)")
    ] = None,
    target: Text = None,
    since: datetime | None = None,
) -> ActivitiesPublic:
    found = ctx.store.activity.list_activity(
        who=who, action=action, target=target, since=since, limit=page.limit, offset=page.offset
    )
    return ActivitiesPublic.of(found)
