"""Sign-in for browsers (the token in an HttpOnly cookie) and who-am-I."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from beliefscope.access import check_same_origin
from server.deps import ContextDep, PresentedDep
from server.schemas import LoginCreate, WhoAmIPublic

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/login")
def login(
    ctx: ContextDep, creds: PresentedDep, response: Response, body: LoginCreate
) -> WhoAmIPublic:
    """Check a token and keep it in a `SameSite=Strict`, HttpOnly cookie for the dashboard."""
    check_same_origin(creds)
    token = ctx.access.sign_in(body.token)
    response.set_cookie(**ctx.access.login_cookie(body.token.strip()))
    return WhoAmIPublic(name=token.name, via="cookie", can_write=True)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(ctx: ContextDep, response: Response) -> None:
    response.set_cookie(**ctx.access.logout_cookie())


@router.get("/me")
def whoami(ctx: ContextDep, creds: PresentedDep) -> WhoAmIPublic:
    principal = ctx.access.identify(creds)
    if principal is None:
        return WhoAmIPublic(name=None, via="anonymous", can_write=False)
    return WhoAmIPublic(name=principal.name, via=principal.via, can_write=True)
