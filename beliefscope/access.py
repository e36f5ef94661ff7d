"""Who is asking and what they may do: one access policy for the API and the dashboard.

Writes always need a live API token, and the token's name is the reviewer recorded in flag
history. Reads are open when the server binds to loopback (or `open_reads` says so). A token
that arrives in the login cookie is a browser session, so a write carrying it must also come
from our own pages: the cookie is `SameSite=Strict` and the request's `Origin` (or `Referer`)
must be this server's own origin. A bearer token is not sent by browsers on their own and needs
no such check. Nothing here knows a web framework: the web layers hand in what a request
presents (`Presented`) and turn `UnauthorizedError` (401) and `ForbiddenError` (403) into
answers; cookie attributes come from here so both set the same cookie.
"""

from __future__ import annotations

import getpass
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from beliefscope.config import Settings
from beliefscope.errors import ForbiddenError, UnauthorizedError
from beliefscope.values.access import Principal, TokenInfo

if TYPE_CHECKING:
    from beliefscope.store.engine import Store

COOKIE = "beliefscope_token"
COOKIE_MAX_AGE_S = 7 * 24 * 3600


def terminal_user() -> str:
    """Who a command typed at a terminal acts as (`cli:<login>`): the reviewer of a rule edit,
    the starter of an ingest job."""
    return f"cli:{getpass.getuser()}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Presented:
    """What a request presents: its credentials and where it says it comes from."""

    authorization: str | None  # the Authorization header
    cookie: str | None  # the login cookie
    origin: str | None  # the Origin header, else the Referer
    host: str  # the Host header

    @classmethod
    def of(cls, headers: Mapping[str, str], cookies: Mapping[str, str]) -> Presented:
        """From a request's headers (case-insensitive, as web frameworks give them) and
        cookies."""
        return cls(
            authorization=headers.get("authorization"),
            cookie=cookies.get(COOKIE) or None,
            origin=headers.get("origin") or headers.get("referer"),
            host=headers.get("host", ""),
        )


class Authorizer:
    """The policy for one server: its store's tokens, its read policy and cookie security,
    derived once from the settings."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self.open_reads = (
            settings.open_reads if settings.open_reads is not None else is_loopback(settings.host)
        )
        """Reads without a token (default: only when bound to loopback)."""
        self.secure_cookies = is_loopback(settings.host)

    def identify(self, presented: Presented) -> Principal | None:
        """The principal of a request that presented a token, None when it presented none;
        `UnauthorizedError` for a token that is not (or no longer) valid."""
        if presented.authorization is not None:
            scheme, _, secret = presented.authorization.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                raise UnauthorizedError("malformed Authorization header: use 'Bearer <token>'")
            return Principal(self._token(secret.strip()).name, "bearer")
        if presented.cookie is not None:
            return Principal(self._token(presented.cookie).name, "cookie")
        return None

    def authorize(self, presented: Presented, *, write: bool) -> Principal:
        principal = self.identify(presented)
        if principal is None:
            if write or not self.open_reads:
                raise UnauthorizedError(
                    "this needs an API token (Authorization: Bearer <token>); "
                    "create one with `beliefscope token create NAME`"
                )
            return Principal(None, "anonymous")
        if write and principal.via == "cookie":
            check_same_origin(presented)
        return principal

    def sign_in(self, secret: str) -> TokenInfo:
        """The live token of a secret typed into a sign-in form."""
        return self._token(secret.strip())

    def login_cookie(self, secret: str) -> dict[str, Any]:
        """`set_cookie` arguments of the login cookie holding `secret`."""
        return {
            "key": COOKIE,
            "value": secret,
            "max_age": COOKIE_MAX_AGE_S,
            "httponly": True,
            "secure": self.secure_cookies,
            "samesite": "strict",
            "path": "/",
        }

    def logout_cookie(self) -> dict[str, Any]:
        """`set_cookie` arguments that clear the login cookie."""
        return {**self.login_cookie(""), "max_age": 0}

    def _token(self, secret: str) -> TokenInfo:
        token = self._store.access.token_for_secret(secret)
        if token is None:
            raise UnauthorizedError("invalid or revoked API token")
        return token


def check_same_origin(presented: Presented) -> None:
    """Refuse a cookie-authenticated write that does not come from this server's pages."""
    if not presented.origin:
        raise ForbiddenError("cookie-authenticated writes need an Origin header")
    parts = urlsplit(presented.origin)
    if parts.scheme not in ("http", "https") or parts.netloc != presented.host:
        raise ForbiddenError(f"cross-origin write refused (origin {presented.origin!r})")
