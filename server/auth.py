"""Who is asking: API tokens from the `Authorization` header or the dashboard's cookie.

Reads are open when the server is bound to loopback (or `open_reads` says so); writes always
need a live token, and the token's name is the reviewer recorded in flag history. A token that
arrives in the cookie is a browser session, so a write carrying it must also prove it comes from
our own pages: the cookie is `SameSite=Strict` and the request's `Origin` (or `Referer`) must be
this server's own origin. A bearer token is not sent automatically by browsers and needs no such
check. There is no CORS middleware at all: other origins cannot read answers.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from fastapi import HTTPException, Request, Response

from beliefscope.store.engine import Store

COOKIE = "beliefscope_token"
COOKIE_MAX_AGE_S = 7 * 24 * 3600


@dataclass(frozen=True)
class Principal:
    name: str | None  # the token's name; None for an anonymous (open) read
    via: Literal["bearer", "cookie", "anonymous"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _presented(request: Request) -> tuple[str | None, Literal["bearer", "cookie"] | None]:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise unauthorized("malformed Authorization header: use 'Bearer <token>'")
        return secret.strip(), "bearer"
    cookie = request.cookies.get(COOKIE)
    return (cookie, "cookie") if cookie else (None, None)


def unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def identify(store: Store, request: Request) -> Principal | None:
    """The principal of a request that presented a token, None when it presented none;
    401 for a token that is not (or no longer) valid."""
    secret, via = _presented(request)
    if secret is None or via is None:
        return None
    token = store.access.token_for_secret(secret)
    if token is None:
        raise unauthorized("invalid or revoked API token")
    return Principal(token.name, via)


def check_same_origin(request: Request) -> None:
    """Refuse a cookie-authenticated write that does not come from this server's pages."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        raise HTTPException(403, "cookie-authenticated writes need an Origin header")
    parts = urlsplit(source)
    own = request.headers.get("host", "")
    if parts.scheme not in ("http", "https") or parts.netloc != own:
        raise HTTPException(403, f"cross-origin write refused (origin {source!r})")


def authorize(store: Store, request: Request, *, write: bool, open_reads: bool) -> Principal:
    principal = identify(store, request)
    if principal is None:
        if write or not open_reads:
            raise unauthorized(
                "this needs an API token (Authorization: Bearer <token>); "
                "create one with `beliefscope token create NAME`"
            )
        return Principal(None, "anonymous")
    if write and principal.via == "cookie":
        check_same_origin(request)
    return principal


def set_login_cookie(response: Response, secret: str, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE,
        secret,
        max_age=COOKIE_MAX_AGE_S,
        httponly=True,
        secure=secure,
        samesite="strict",
        path="/",
    )


def clear_login_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
