"""Who is using the dashboard, through the server's own access control (`server.auth`).

The dashboard signs in with an API token kept in the same `SameSite=Strict`, HttpOnly cookie the
API accepts, and every write a callback makes is authorized by `server.auth.authorize` on the
callback's request, so the reviewer named in flag history is the token's name, exactly as for
a write through the REST API.
"""

from __future__ import annotations

from typing import Any, cast

import dash
from dash import html
from dash.backends._fastapi import get_current_request
from fastapi import HTTPException

from dashboard.context import current
from server import auth


class NotAllowed(Exception):
    """A write without a valid session; the message says what to do."""


def _open_reads() -> bool:
    settings = current().settings
    return (
        settings.open_reads if settings.open_reads is not None else auth.is_loopback(settings.host)
    )


def reviewer_name() -> str | None:
    """The signed-in token's name, None when nobody (or an invalid token) is signed in."""
    try:
        principal = auth.identify(current().store, get_current_request())
    except HTTPException:
        return None
    return None if principal is None else principal.name


def can_read() -> bool:
    return _open_reads() or reviewer_name() is not None


def require_writer() -> str:
    """The reviewer's name for a write, or `NotAllowed` with the reason."""
    try:
        principal = auth.authorize(
            current().store, get_current_request(), write=True, open_reads=_open_reads()
        )
    except HTTPException as err:
        raise NotAllowed(f"sign in with an API token to make changes ({err.detail})") from None
    assert principal.name is not None
    return principal.name


def _secure() -> bool:
    return auth.is_loopback(current().settings.host)


def sign_in(secret: str) -> str | None:
    """Check the token and set the login cookie on this callback's response."""
    token = current().store.access.token_for_secret(secret.strip())
    if token is None:
        return None
    auth.set_login_cookie(cast(Any, dash.ctx.response), secret.strip(), secure=_secure())
    return token.name


def sign_out() -> None:
    dash.ctx.response.set_cookie(
        auth.COOKIE,
        "",
        max_age=0,
        httponly=True,
        samesite="strict",
        path="/",
        secure=_secure(),
    )


def toast(message: str, *, ok: bool = True) -> html.Span:
    return html.Span(message, className="bs-toast-msg" + ("" if ok else " bs-toast-err"))
