"""Outbound URLs chosen by clients (webhooks, input images) must not make the server
reach its own network: loopback, private, link-local (cloud metadata) and other
non-global addresses are refused unless BACKSERV["ALLOW_PRIVATE_URLS"] is on.

The check resolves the host and refuses it if ANY address is not public; the caller
then connects to a checked address (`pinned_connection`), so a DNS answer that changes
between check and connect (rebinding) cannot slip a private address in.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

ALLOWED_SCHEMES = ("http", "https")


class UnsafeURL(ValueError):
    """The URL is malformed, unresolvable or points at a refused address."""


class UnresolvableHost(UnsafeURL):
    """The host has no address now (a later try may succeed)."""


@dataclass(frozen=True)
class CheckedTarget:
    scheme: str
    host: str
    port: int
    # The request target: path and query, never empty.
    path: str
    addresses: tuple[str, ...]


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def private_urls_allowed() -> bool:
    return bool(settings.BACKSERV["ALLOW_PRIVATE_URLS"])


def check_url_syntax(url: str) -> tuple[str, str, int, str]:
    """Scheme, host, port and request path of an http(s) URL, without resolving it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeURL(f"Not a valid URL: {error}.") from None
    if parts.scheme not in ALLOWED_SCHEMES:
        raise UnsafeURL("Only http and https URLs are allowed.")
    if not parts.hostname:
        raise UnsafeURL("The URL has no host.")
    if parts.username or parts.password:
        raise UnsafeURL("Credentials in the URL are not allowed.")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path


def check_url(url: str) -> CheckedTarget:
    scheme, host, port, path = check_url_syntax(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnresolvableHost(f"The host {host!r} could not be resolved.") from None
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise UnresolvableHost(f"The host {host!r} could not be resolved.")
    if not private_urls_allowed():
        refused = [address for address in addresses if not is_public_address(address)]
        if refused:
            raise UnsafeURL(f"The host {host!r} resolves to a private or reserved address ({refused[0]}).")
    return CheckedTarget(scheme=scheme, host=host, port=port, path=path, addresses=addresses)


def pinned_connection(target: CheckedTarget, *, timeout: float) -> http.client.HTTPConnection:
    """An HTTP(S) connection to the target's host that connects only to its checked
    address (TLS still verifies the host name)."""
    connection_class = http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(target.host, target.port, timeout=timeout)
    address = target.addresses[0]

    def connect_checked(
        _address: tuple[str, int], timeout: float | None = None, source_address: tuple[str, int] | None = None
    ) -> socket.socket:
        return socket.create_connection((address, target.port), timeout, source_address)

    connection._create_connection = connect_checked  # type: ignore[attr-defined]
    return connection
