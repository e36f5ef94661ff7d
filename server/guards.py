"""What every response of the process passes through (API and dashboard alike): the `Host`
check against DNS rebinding and the security headers.

The Content-Security-Policy allows scripts from this origin only, plus the hashes of inline
scripts the dashboard declares (Dash's renderer bootstrap); styles may be inline (Dash and
Plotly set style attributes), images may be `data:`/`blob:` (Plotly's exports). No page may be
framed by another site (`frame-ancestors 'none'` and `X-Frame-Options: DENY`). The interactive
API docs (`/docs`, `/redoc`) load Swagger UI and ReDoc from their CDN and get a policy that
allows it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from beliefscope.access.hosts import HostPolicy

DOCS_PATHS = ("/docs", "/redoc")
_DOCS_CDN = "https://cdn.jsdelivr.net"


@dataclass
class ContentPolicy:
    """The CSP; the command wiring adds the dashboard's inline-script hashes once it is built."""

    script_hashes: list[str] = field(default_factory=list)

    def header(self, path: str) -> str:
        if path.startswith(DOCS_PATHS):
            return (
                f"default-src 'self'; script-src 'self' 'unsafe-inline' {_DOCS_CDN}; "
                f"style-src 'self' 'unsafe-inline' {_DOCS_CDN}; img-src 'self' data: "
                "https://fastapi.tiangolo.com; worker-src blob:; frame-ancestors 'none'"
            )
        scripts = " ".join(["'self'", *self.script_hashes])
        return (
            f"default-src 'self'; script-src {scripts}; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
            "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
        )


class Guards:
    """Refuse a request for a host this server is not (400), then add the security headers
    to whatever answers."""

    def __init__(self, app: ASGIApp, *, hosts: HostPolicy, policy: ContentPolicy) -> None:
        self.app = app
        self.hosts = hosts
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        csp = self.policy.header(scope.get("path", ""))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _OURS]
                headers += [
                    (b"content-security-policy", csp.encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        if not self.hosts.allows(host):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await _refuse(with_headers, host)
            return
        await self.app(scope, receive, with_headers)


_OURS = {
    b"content-security-policy",
    b"x-frame-options",
    b"x-content-type-options",
    b"referrer-policy",
}


async def _refuse(send: Send, host: str) -> None:
    detail = f"this server does not answer for host {host!r} (see BELIEFSCOPE_ALLOWED_HOSTS)"
    body = json.dumps({"detail": detail, "status": 400}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
