"""Sign-in for browsers (a session id in an HttpOnly cookie) and who-am-I."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from server.deps import ContextDep, PresentedDep
from server.schemas import LoginCreate, WhoAmIPublic

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/login")
def login(
    ctx: ContextDep, creds: PresentedDep, response: Response, body: LoginCreate
) -> WhoAmIPublic:
    """Check a token (from our own pages only) and start a session for it: the
    `SameSite=Strict`, HttpOnly cookie holds the session's id, never the token."""
    token, cookie = ctx.access.sign_in(creds, body.token)
    response.set_cookie(**cookie)
    return WhoAmIPublic(
        name=token.name, via="cookie", scope=token.scope, can_write=token.scope != "read"
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(ctx: ContextDep, creds: PresentedDep, response: Response) -> None:
    """End the session on the server (its cookie stops working everywhere) and clear it."""
    response.set_cookie(**ctx.access.sign_out(creds))


@router.get("/me")
def whoami(ctx: ContextDep, creds: PresentedDep) -> WhoAmIPublic:
    principal = ctx.access.identify(creds)
    if principal is None:
        return WhoAmIPublic(name=None, via="anonymous", scope=None, can_write=False)
    return WhoAmIPublic(
        name=principal.name,
        via=principal.via,
        scope=principal.scope,
        can_write=principal.scope != "read",
    )
