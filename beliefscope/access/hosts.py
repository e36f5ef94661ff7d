"""Which `Host` headers the server answers: a DNS-rebinding page reaches a loopback server under
the attacker's own name, so a request naming any other host is refused, whatever it asks for.

The loopback names are always answered (a rebinding page cannot send them: a browser sends the
name of the page's own site, and it is not ours). Besides them, `allowed_hosts` names the hosts
the server is reached by; empty (the default) means the bind address, or this machine's host
name on a wildcard bind (0.0.0.0, ::). `*` answers any host (only behind a proxy that checks
it).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_WILDCARD = ("0.0.0.0", "::", "")


def host_name(header: str) -> str | None:
    """The host of a `Host` header without its port, lowercased (None when malformed)."""
    try:
        parts = urlsplit(f"//{header.strip()}")
        _ = parts.port  # raises for a port that is not a number
    except ValueError:
        return None
    name = parts.hostname
    if not name or parts.username is not None or parts.path or parts.query:
        return None
    return name.rstrip(".")


class HostPolicy:
    def __init__(self, allowed: Iterable[str], bind: str) -> None:
        names = [*LOOPBACK_NAMES, *(list(allowed) or [default_host(bind)])]
        self.any = "*" in names
        self.names = frozenset(n.strip().strip("[]").lower().rstrip(".") for n in names if n)

    def allows(self, header: str) -> bool:
        name = host_name(header)
        return name is not None and (self.any or name in self.names)


def default_host(bind: str) -> str:
    return socket.gethostname() if bind in _WILDCARD else bind
