"""Where webhooks may point, and sending to exactly the address that was checked.

A hook's host is resolved and every address it resolves to must be public: loopback, private,
link-local, unspecified, shared (CGNAT), reserved and multicast addresses are refused, also
when hidden in an IPv4-mapped, NAT64 or 6to4 IPv6 address, a decimal IPv4 (`2130706433`) or a
name that resolves to one (`metadata.google.internal`). The check runs when the hook is
created and again before each delivery, and the delivery connects to the address just checked
(so a DNS answer that changes in between, DNS rebinding, cannot redirect it). Redirects are
never followed. A deliberate local receiver is allowed by `webhook_allow` (addresses or
networks, optionally with a port).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from beliefscope.errors import BadInputError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_DEFAULT_PORT = {"http": 80, "https": 443}


class RefusedTarget(BadInputError):
    """A webhook URL that may not be used (its message is for admins: it names addresses)."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (`address`) and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent in the request line
    address: str


def mask(url: str) -> str:
    """What non-admins see of a hook's URL: scheme, host and port (credentials, path and query
    can hold secrets)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(hidden)"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}/…"


def embedded(address: Address) -> Address:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def is_public(address: Address) -> bool:
    inner = embedded(address)
    return all(a.is_global and not a.is_multicast for a in {address, inner})


class TargetPolicy:
    def __init__(self, allow: Iterable[str] = ()) -> None:
        self._allow = [_allow_entry(entry) for entry in allow]

    def check(self, url: str) -> Target:
        """The target of `url`, resolved now; `RefusedTarget` saying why it may not be used."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as err:
            raise RefusedTarget(f"webhook URL: {err}") from None
        if parts.scheme not in _DEFAULT_PORT or not parts.hostname:
            raise RefusedTarget("webhook URL: use http:// or https:// and a host")
        if parts.username is not None or parts.password is not None:
            raise RefusedTarget(
                "webhook URL: no credentials in the URL (receivers verify the signature)"
            )
        host = parts.hostname
        port = port or _DEFAULT_PORT[parts.scheme]
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as err:
            raise RefusedTarget(f"webhook URL: {host} does not resolve ({err})") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for text in addresses:
            address = ipaddress.ip_address(text.split("%")[0])
            if not is_public(address) and not self._allowed(address, port):
                raise RefusedTarget(
                    f"webhook URL: {host} resolves to {address}, which is not a public address "
                    "(loopback, private, link-local or reserved); a deliberate local receiver "
                    "goes in BELIEFSCOPE_WEBHOOK_ALLOW"
                )
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return Target(parts.scheme, host, port, path, addresses[0])

    def _allowed(self, address: Address, port: int) -> bool:
        return any(
            embedded(address) in net or address in net
            for net, only_port in self._allow
            if only_port in (None, port)
        )


def _allow_entry(entry: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]:
    """`10.0.0.0/8`, `127.0.0.1`, `127.0.0.1:9000` or `[::1]:9000`."""
    text = entry.strip()
    try:
        return ipaddress.ip_network(text, strict=False), None
    except ValueError:
        pass
    host, sep, port = text.rpartition(":")
    try:
        if not sep or not port.isdigit():
            raise ValueError
        return ipaddress.ip_network(host.strip("[]"), strict=False), int(port)
    except ValueError:
        raise BadInputError(
            f"webhook_allow entry {entry!r}: use an address or network, optionally with a port "
            "(127.0.0.1:9000, 10.0.0.0/8, [::1]:9000)"
        ) from None


def post(target: Target, body: bytes, headers: dict[str, str], *, timeout: float) -> int:
    """POST `body` to the checked address of `target`; returns the HTTP status (a redirect is
    an answer like any other, never followed)."""
    connection: http.client.HTTPConnection
    if target.scheme == "https":
        connection = _PinnedHTTPS(target, timeout)
    else:
        connection = _PinnedHTTP(target, timeout)
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        answer = connection.getresponse()
        answer.read(65536)
        return answer.status
    finally:
        connection.close()


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(
            target.host, target.port, timeout=timeout, context=ssl.create_default_context()
        )
        self._address = target.address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]
