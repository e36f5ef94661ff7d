"""Who is using the dashboard, under the same access policy as the API (`beliefscope.access`).

The dashboard signs in with an API token once and keeps the session the server starts for it
in the same `SameSite=Strict`, HttpOnly cookie the API accepts (a session id, never the token).
Signing in and out set that cookie, so they answer only a request from our own pages (the
Origin check, exactly as `/api/v1/auth/login`), and every write a callback makes is authorized
on the callback's request by the server's own `Authorizer` (handed to the dashboard when it is
built) with the scope it needs, so the reviewer named in flag history is the token's name,
exactly as for a write through the REST API.
"""

from __future__ import annotations

import dash
from dash import html

from beliefscope.access import Presented
from beliefscope.errors import BeliefscopeError
from beliefscope.values.access import Scope
from dashboard.context import current
from dashboard.dash_internals import current_request


class NotAllowed(Exception):
    """A write without a fitting session, or a refused sign-in; the message says why."""


def _presented() -> Presented:
    request = current_request()
    client = request.client.host if request.client else ""
    return Presented.of(request.headers, request.cookies, client)


def reviewer_name() -> str | None:
    """The signed-in token's name, None when nobody (or an invalid session) is signed in."""
    try:
        principal = current().access.identify(_presented())
    except BeliefscopeError:
        return None
    return None if principal is None else principal.name


def can_read() -> bool:
    return current().access.open_reads or reviewer_name() is not None


def require(scope: Scope) -> str:
    """The reviewer's name for a write that needs `scope`, or `NotAllowed` with the reason."""
    try:
        principal = current().access.authorize(_presented(), need=scope)
    except BeliefscopeError as err:
        raise NotAllowed(f"sign in with a {scope!r} token to make this change ({err})") from None
    assert principal.name is not None
    return principal.name


def sign_in(secret: str) -> str:
    """Start a session for the token and set its cookie on this callback's response; returns
    the token's name, or `NotAllowed` (bad token, another site's page, too many tries)."""
    try:
        token, cookie = current().access.sign_in(_presented(), secret)
    except BeliefscopeError as err:
        raise NotAllowed(str(err)) from None
    dash.ctx.response.set_cookie(**cookie)
    return token.name


def sign_out() -> None:
    """End the session on the server and clear its cookie."""
    try:
        cookie = current().access.sign_out(_presented())
    except BeliefscopeError as err:
        raise NotAllowed(str(err)) from None
    dash.ctx.response.set_cookie(**cookie)


def token_command() -> str:
    """The exact command that makes a token this dashboard accepts: the store it serves."""
    return f"beliefscope token create NAME --store {current().store.url}"


def toast(message: str, *, ok: bool = True) -> html.Span:
    return html.Span(message, className="bs-toast-msg" + ("" if ok else " bs-toast-err"))
