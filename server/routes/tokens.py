"""API tokens (admin): list (never secrets), create (the secret shown once), revoke."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, status

from beliefscope.access.lifetime import parse_lifetime
from beliefscope.values.access import TokenInfo
from server.deps import AdminDep, ContextDep
from server.schemas import TokenCreate, TokenCreatedPublic, TokenPublic, TokensPublic

router = APIRouter(prefix="/tokens", tags=["tokens"])


def _public(token: TokenInfo) -> TokenPublic:
    return TokenPublic.model_validate({**asdict(token), "state": token.state(datetime.now(UTC))})


@router.get("")
def list_tokens(ctx: ContextDep, _who: AdminDep) -> TokensPublic:
    found = [_public(t) for t in ctx.store.access.list_tokens()]
    return TokensPublic(data=found, count=len(found))


@router.post("", status_code=status.HTTP_201_CREATED)
def create_token(ctx: ContextDep, who: AdminDep, body: TokenCreate) -> TokenCreatedPublic:
    """A new token; its secret is in this answer only."""
    assert who.name is not None
    expires = None if body.expires is None else datetime.now(UTC) + parse_lifetime(body.expires)
    token, secret = ctx.store.access.create_token(
        body.name, scope=body.scope, expires=expires, who=who.name
    )
    return TokenCreatedPublic.model_validate({**_public(token).model_dump(), "secret": secret})


@router.delete("/{name}")
def revoke_token(
    ctx: ContextDep, who: AdminDep, name: Annotated[str, Path(min_length=1, max_length=100)]
) -> TokenPublic:
    """Revoke the live token of this name; its sessions end with it."""
    assert who.name is not None
    return _public(ctx.store.access.revoke_token(name, who=who.name))
