"""Who is asking and what they may do: one access policy for the API and the dashboard.

Every token has a scope (`values.access.SCOPES`: `read` < `review` < `admin`) and perhaps an
expiry; a request needs the scope its route declares, and the token's name is the reviewer
recorded in flag history and the activity log. Reads are open when the server binds to
loopback (or `open_reads` says so). A browser signs in with a token once and gets a session: the
login cookie holds a random session id, never the token, and signing out ends the session on
the server. A write through the cookie must also come from our own pages: the cookie is
`SameSite=Strict` and the request's `Origin` (or `Referer`) must be this server's own origin,
on every path that sets the cookie too. A bearer token is not sent by browsers on their own and
needs no such check. Failed sign-ins and bad bearer tokens are throttled per client and logged
without the secret.

Nothing here knows a web framework: the web layers hand in what a request presents
(`Presented`) and turn `UnauthorizedError` (401), `ForbiddenError` (403) and
`TooManyRequestsError` (429) into answers; cookie attributes come from here so both set the
same cookie.
"""

from __future__ import annotations

import getpass
import ipaddress
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from beliefscope.access.hosts import HostPolicy
from beliefscope.access.throttle import Throttle
from beliefscope.config import Settings
from beliefscope.errors import ForbiddenError, UnauthorizedError
from beliefscope.values.access import Principal, Scope, TokenInfo, allows
from beliefscope.values.review import HistoryEntry

if TYPE_CHECKING:
    from beliefscope.store.engine import Store

log = logging.getLogger("beliefscope.access")

COOKIE = "beliefscope_session"


def terminal_user() -> str:
    """Who a command typed at a terminal acts as (`cli:<login>`): the reviewer of a rule edit,
    the starter of an ingest job, the issuer of a token."""
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
    """What a request presents: its credentials, where it says it comes from, who sent it."""

    authorization: str | None  # the Authorization header
    cookie: str | None  # the login cookie (a session id)
    origin: str | None  # the Origin header, else the Referer
    host: str  # the Host header
    client: str = ""  # the client's address: what failures are throttled by

    @classmethod
    def of(
        cls, headers: Mapping[str, str], cookies: Mapping[str, str], client: str = ""
    ) -> Presented:
        """From a request's headers (case-insensitive, as web frameworks give them), cookies
        and client address."""
        return cls(
            authorization=headers.get("authorization"),
            cookie=cookies.get(COOKIE) or None,
            origin=headers.get("origin") or headers.get("referer"),
            host=headers.get("host", ""),
            client=client,
        )


class Authorizer:
    """The policy for one server: its store's tokens and sessions, its read policy, allowed
    hosts, cookie security and throttle, derived once from the settings."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self.open_reads = (
            settings.open_reads if settings.open_reads is not None else is_loopback(settings.host)
        )
        """Reads without a token (default: only when bound to loopback)."""
        self.secure_cookies = settings.cookie_secure
        self.session_lifetime = timedelta(hours=settings.session_hours)
        self.hosts = HostPolicy(settings.allowed_hosts, settings.host)
        self.throttle = Throttle(settings.auth_failures_per_minute, window_s=60.0)

    def identify(self, presented: Presented) -> Principal | None:
        """The principal of a request that presented a token or a live session, None when it
        presented neither (a stale session cookie counts as none: sign in again);
        `UnauthorizedError` for a bearer token that is not (or no longer) valid."""
        if presented.authorization is not None:
            self.throttle.check(presented.client)
            scheme, _, secret = presented.authorization.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                self._refused(presented, "a malformed Authorization header")
                raise UnauthorizedError("malformed Authorization header: use 'Bearer <token>'")
            token = self._token(presented, secret.strip())
            return Principal(token.name, "bearer", token.scope)
        if presented.cookie is not None:
            session = self._store.access.session_for_secret(presented.cookie)
            if session is not None and session.token.state(_now()) == "live":
                return Principal(session.token.name, "cookie", session.token.scope)
        return None

    def authorize(self, presented: Presented, *, need: Scope) -> Principal:
        """The principal, if it may do what needs scope `need`; else 401 (nobody, or a bad
        token), 403 (a scope too small, or a cookie write from another origin) or 429."""
        return self.permit(self.identify(presented), presented, need=need)

    def permit(
        self, principal: Principal | None, presented: Presented, *, need: Scope
    ) -> Principal:
        """`authorize` for a principal already identified from `presented`."""
        if principal is None:
            if need != "read" or not self.open_reads:
                raise UnauthorizedError(
                    "this needs an API token (Authorization: Bearer <token>); "
                    "create one with `beliefscope token create NAME`"
                )
            return Principal(None, "anonymous")
        if not allows(principal.scope, need):
            raise ForbiddenError(
                f"this needs a token with scope {need!r}; {principal.name!r} has "
                f"{principal.scope!r} (`beliefscope token create NAME --scope {need}`)"
            )
        if need != "read" and principal.via == "cookie":
            check_same_origin(presented)
        return principal

    def sign_in(self, presented: Presented, secret: str) -> tuple[TokenInfo, dict[str, Any]]:
        """A new session for the token whose secret was typed into a sign-in form, from our
        own pages only; returns the token and the `set_cookie` arguments of its cookie."""
        check_same_origin(presented)
        self.throttle.check(presented.client)
        token = self._token(presented, secret.strip())
        now = _now()
        expires = now + self.session_lifetime
        if token.expires is not None:
            expires = min(expires, token.expires)
        _session, session_id = self._store.access.create_session(token, expires=expires)
        return token, self._cookie(session_id, max_age=int((expires - now).total_seconds()))

    def sign_out(self, presented: Presented) -> dict[str, Any]:
        """End the request's session on the server; returns the `set_cookie` arguments that
        clear the cookie."""
        if presented.cookie is not None:
            check_same_origin(presented)
            self._store.access.end_session(presented.cookie)
        return self._cookie("", max_age=0)

    def _cookie(self, value: str, *, max_age: int) -> dict[str, Any]:
        return {
            "key": COOKIE,
            "value": value,
            "max_age": max_age,
            "httponly": True,
            "secure": self.secure_cookies,
            "samesite": "strict",
            "path": "/",
        }

    def _token(self, presented: Presented, secret: str) -> TokenInfo:
        token = self._store.access.token_for_secret(secret)
        if token is None:
            self._refused(presented, "an unknown or revoked token")
            raise UnauthorizedError("invalid or revoked API token")
        if token.state(_now()) == "expired":
            assert token.expires is not None
            self._refused(presented, f"the expired token {token.name!r}")
            raise UnauthorizedError(
                f"API token {token.name!r} expired on {token.expires:%Y-%m-%d %H:%M} UTC"
            )
        return token

    def _refused(self, presented: Presented, what: str) -> None:
        """Count a failure against the client and log it (never the secret)."""
        self.throttle.failed(presented.client)
        log.warning("refused %s from client %s", what, presented.client or "unknown")


def check_same_origin(presented: Presented) -> None:
    """Refuse a cookie-authenticated write (or a cookie being set) that does not come from
    this server's pages."""
    if not presented.origin:
        raise ForbiddenError("cookie-authenticated writes need an Origin header")
    parts = urlsplit(presented.origin)
    if parts.scheme not in ("http", "https") or parts.netloc != presented.host:
        raise ForbiddenError(f"cross-origin write refused (origin {presented.origin!r})")


def check_may_delete(principal: Principal, history: Sequence[HistoryEntry]) -> None:
    """A reviewer may delete a flag that nobody else has touched (a box they drew by mistake);
    a flag someone else created or reviewed needs an admin."""
    if allows(principal.scope, "admin"):
        return
    others = sorted({h.who for h in history} - {principal.name})
    if others:
        raise ForbiddenError(
            f"only an admin can delete a flag others have worked on (here: {', '.join(others)}); "
            "dismiss it instead"
        )


def _now() -> datetime:
    return datetime.now(UTC)
