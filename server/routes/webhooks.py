"""Webhooks: register a URL and a minimum severity; deliveries and their failures."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from server.deps import ContextDep, IdPath, PageDep, WriterDep
from server.schemas import DeliveriesPublic, WebhookCreate, WebhookPublic, WebhooksPublic
from server.webhooks import newest_flag_id

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@router.get("")
def list_webhooks(ctx: ContextDep, page: PageDep) -> WebhooksPublic:
    return WebhooksPublic.of(ctx.store.access.list_webhooks(limit=page.limit, offset=page.offset))


@router.post("", status_code=status.HTTP_201_CREATED)
def create_webhook(ctx: ContextDep, who: WriterDep, body: WebhookCreate) -> WebhookPublic:
    """Flags created from now on at or above `min_severity` are POSTed to `url`."""
    assert who.name is not None
    hook = ctx.store.access.create_webhook(
        url=body.url,
        min_severity=body.min_severity,
        created_by=who.name,
        after_flag_id=newest_flag_id(ctx.store),
    )
    return WebhookPublic.model_validate(hook)


@router.get("/{webhook_id}")
def get_webhook(ctx: ContextDep, webhook_id: IdPath) -> WebhookPublic:
    return WebhookPublic.model_validate(ctx.store.access.get_webhook(webhook_id))


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_webhook(ctx: ContextDep, _who: WriterDep, webhook_id: IdPath) -> None:
    ctx.store.access.delete_webhook(webhook_id)


@router.get("/{webhook_id}/deliveries")
def list_deliveries(
    ctx: ContextDep,
    webhook_id: IdPath,
    page: PageDep,
    state: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
) -> DeliveriesPublic:
    ctx.store.access.get_webhook(webhook_id)
    found = ctx.store.access.list_deliveries(
        webhook_id=webhook_id, state=state, limit=page.limit, offset=page.offset
    )
    return DeliveriesPublic.of(found)
