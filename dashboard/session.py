"""Who is using the dashboard, under the same access policy as the API (`beliefscope.access`).

The dashboard signs in with an API token kept in the same `SameSite=Strict`, HttpOnly cookie the
API accepts, and every write a callback makes is authorized on the callback's request by the
server's own `Authorizer` (handed to the dashboard when it is built), so the reviewer named in
flag history is the token's name, exactly as for a write through the REST API.
"""

from __future__ import annotations

import dash
from dash import html

from beliefscope.access import Presented
from beliefscope.errors import ForbiddenError, UnauthorizedError
from dashboard.context import current
from dashboard.dash_internals import current_request


class NotAllowed(Exception):
    """A write without a valid session; the message says what to do."""


def _presented() -> Presented:
    request = current_request()
    return Presented.of(request.headers, request.cookies)


def reviewer_name() -> str | None:
    """The signed-in token's name, None when nobody (or an invalid token) is signed in."""
    try:
        principal = current().access.identify(_presented())
    except UnauthorizedError:
        return None
    return None if principal is None else principal.name


def can_read() -> bool:
    return current().access.open_reads or reviewer_name() is not None


def require_writer() -> str:
    """The reviewer's name for a write, or `NotAllowed` with the reason."""
    try:
        principal = current().access.authorize(_presented(), write=True)
    except (UnauthorizedError, ForbiddenError) as err:
        raise NotAllowed(f"sign in with an API token to make changes ({err})") from None
    assert principal.name is not None
    return principal.name


def sign_in(secret: str) -> str | None:
    """Check the token and set the login cookie on this callback's response."""
    access = current().access
    try:
        token = access.sign_in(secret)
    except UnauthorizedError:
        return None
    dash.ctx.response.set_cookie(**access.login_cookie(secret.strip()))
    return token.name


def sign_out() -> None:
    dash.ctx.response.set_cookie(**current().access.logout_cookie())


def token_command() -> str:
    """The exact command that makes a token this dashboard accepts: the store it serves."""
    return f"beliefscope token create NAME --store {current().store.url}"


def toast(message: str, *, ok: bool = True) -> html.Span:
    return html.Span(message, className="bs-toast-msg" + ("" if ok else " bs-toast-err"))
