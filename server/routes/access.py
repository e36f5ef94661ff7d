"""Sign-in for browsers (the token in an HttpOnly cookie) and who-am-I."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from server import auth
from server.deps import ContextDep
from server.schemas import LoginCreate, WhoAmIPublic

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/login")
def login(ctx: ContextDep, request: Request, response: Response, body: LoginCreate) -> WhoAmIPublic:
    """Check a token and keep it in a `SameSite=Strict`, HttpOnly cookie for the dashboard."""
    auth.check_same_origin(request)
    token = ctx.store.access.token_for_secret(body.token.strip())
    if token is None:
        raise auth.unauthorized("invalid or revoked API token")
    auth.set_login_cookie(response, body.token.strip(), secure=ctx.secure_cookies)
    return WhoAmIPublic(name=token.name, via="cookie", can_write=True)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(response: Response) -> None:
    auth.clear_login_cookie(response)


@router.get("/me")
def whoami(ctx: ContextDep, request: Request) -> WhoAmIPublic:
    principal = auth.identify(ctx.store, request)
    if principal is None:
        return WhoAmIPublic(name=None, via="anonymous", can_write=False)
    return WhoAmIPublic(name=principal.name, via=principal.via, can_write=True)
