"""Webhooks (`admin` to change): register a URL and a minimum severity; deliveries and their
failures.

A hook's target must be a public address (`server.targets`; `webhook_allow` for a deliberate
local receiver) and its signing secret is in the creation answer only. Readers who are not
admins see URLs masked to scheme, host and port, and of a failed delivery only that it failed
(its status and error would make the hooks a port scanner).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from beliefscope.errors import ForbiddenError
from beliefscope.values.access import DeliveryInfo, Principal, WebhookInfo, allows
from server.deps import AdminDep, ContextDep, IdPath, PageDep, ReaderDep
from server.schemas import (
    DeliveriesPublic,
    DeliveryPublic,
    WebhookCreate,
    WebhookCreatedPublic,
    WebhookPublic,
    WebhookSecretPublic,
    WebhooksPublic,
)
from server.targets import mask

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

GENERIC_FAILURE = "delivery failed (an admin can see why)"


def _public(hook: WebhookInfo, who: Principal) -> WebhookPublic:
    shown = WebhookPublic.model_validate(hook)
    return shown if allows(who.scope, "admin") else shown.model_copy(update={"url": mask(hook.url)})


def _delivery(delivery: DeliveryInfo, who: Principal) -> DeliveryPublic:
    shown = DeliveryPublic.model_validate(delivery)
    if allows(who.scope, "admin") or delivery.last_error is None:
        return shown
    return shown.model_copy(update={"last_status": None, "last_error": GENERIC_FAILURE})


@router.get("")
def list_webhooks(
    ctx: ContextDep,
    who: ReaderDep,
    page: PageDep,
    deleted: Annotated[bool, Query(description="admins: only the deleted hooks")] = False,
) -> WebhooksPublic:
    if deleted and not allows(who.scope, "admin"):
        raise ForbiddenError("only an admin can list deleted webhooks")
    found = ctx.store.access.list_webhooks(limit=page.limit, offset=page.offset, deleted=deleted)
    return WebhooksPublic(
        data=[_public(h, who) for h in found.items],
        count=found.total,
        limit=found.limit,
        offset=found.offset,
    )


@router.post("", status_code=status.HTTP_201_CREATED)
def create_webhook(ctx: ContextDep, who: AdminDep, body: WebhookCreate) -> WebhookCreatedPublic:
    """Flags created from now on at or above `min_severity` are POSTed to `url`, signed with
    the secret in this answer (shown this once)."""
    assert who.name is not None
    ctx.webhooks.targets.check(body.url)
    hook, secret = ctx.store.access.create_webhook(
        url=body.url, min_severity=body.min_severity, created_by=who.name
    )
    return WebhookCreatedPublic.model_validate(
        {**_public(hook, who).model_dump(), "secret": secret}
    )


@router.get("/{webhook_id}")
def get_webhook(ctx: ContextDep, who: ReaderDep, webhook_id: IdPath) -> WebhookPublic:
    admin = allows(who.scope, "admin")
    return _public(ctx.store.access.get_webhook(webhook_id, include_deleted=admin), who)


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_webhook(ctx: ContextDep, who: AdminDep, webhook_id: IdPath) -> None:
    """Stop and hide the hook; it is kept with its deliveries and can be restored."""
    assert who.name is not None
    ctx.store.access.delete_webhook(webhook_id, who=who.name)


@router.post("/{webhook_id}/restore")
def restore_webhook(ctx: ContextDep, who: AdminDep, webhook_id: IdPath) -> WebhookPublic:
    """Undo a deletion; flags made while it was deleted are not sent."""
    assert who.name is not None
    return _public(ctx.store.access.restore_webhook(webhook_id, who=who.name), who)


@router.post("/{webhook_id}/secret")
def replace_secret(ctx: ContextDep, who: AdminDep, webhook_id: IdPath) -> WebhookSecretPublic:
    """A new signing secret (shown this once); the old one stops signing at once."""
    assert who.name is not None
    return WebhookSecretPublic(secret=ctx.store.access.replace_secret(webhook_id, who=who.name))


@router.get("/{webhook_id}/deliveries")
def list_deliveries(
    ctx: ContextDep,
    who: ReaderDep,
    webhook_id: IdPath,
    page: PageDep,
    state: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
) -> DeliveriesPublic:
    ctx.store.access.get_webhook(webhook_id, include_deleted=allows(who.scope, "admin"))
    found = ctx.store.access.list_deliveries(
        webhook_id=webhook_id, state=state, limit=page.limit, offset=page.offset
    )
    return DeliveriesPublic(
        data=[_delivery(d, who) for d in found.items],
        count=found.total,
        limit=found.limit,
        offset=found.offset,
    )
