"""Outbound URLs chosen by clients (webhooks, input images) must not make the server
reach its own network: loopback, private, link-local (cloud metadata) and other
non-global addresses are refused unless BACKSERV["ALLOW_PRIVATE_URLS"] is on or the
address is inside one of BACKSERV["ALLOWED_NETWORKS"].

A host is refused if ANY address it resolves to is refused; the caller then connects to
a checked address (`pinned_connection`), so a DNS answer that changes between check and
connect (rebinding) cannot slip a private address in. Built on http.client because it
exposes the connection step and ignores proxy variables; the usual clients resolve and
connect in one call.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

ALLOWED_SCHEMES = ("http", "https")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class UnsafeURL(ValueError):
    """The URL is malformed, unresolvable or points at a refused address."""


class UnresolvableHost(UnsafeURL):
    """The host has no address now (a later try may succeed)."""


class RefusedAddress(UnsafeURL):
    """The host resolves to an address outbound requests may not reach."""


@dataclass(frozen=True)
class CheckedTarget:
    scheme: str
    host: str
    port: int
    # The request target: path and query, never empty.
    path: str
    addresses: tuple[str, ...]


def private_urls_allowed() -> bool:
    return bool(settings.BACKSERV["ALLOW_PRIVATE_URLS"])


def allowed_networks() -> list[IPNetwork]:
    try:
        return [ipaddress.ip_network(cidr, strict=False) for cidr in settings.BACKSERV["ALLOWED_NETWORKS"]]
    except ValueError as error:
        raise ImproperlyConfigured(f"OUTBOUND_ALLOWED_NETWORKS: {error}") from None


def address_refusal(address: str) -> str | None:
    """Why the server may not connect to this IP address, or None when it may.
    ValueError when address is not an IP address."""
    # A zone id (fe80::1%eth0) names the interface, not the address.
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if private_urls_allowed() or any(ip in network for network in allowed_networks()):
        return None
    # is_global alone lets multicast through.
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        return f"{ip} is not a public address; only public addresses may be reached."
    return None


def resolve(host: str, port: int) -> tuple[str, ...]:
    """Every address host resolves to, all of them allowed; UnresolvableHost or
    RefusedAddress otherwise."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UnresolvableHost(f"The host {host!r} could not be resolved: {error}.") from None
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise UnresolvableHost(f"The host {host!r} could not be resolved.")
    # Any refused address refuses the host: a name that also points inside is not trusted.
    for address in addresses:
        refusal = address_refusal(address)
        if refusal:
            raise RefusedAddress(f"The host {host!r} resolves to a refused address: {refusal}")
    return addresses


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
    return CheckedTarget(scheme=scheme, host=host, port=port, path=path, addresses=resolve(host, port))


def pinned_connection(*, scheme: str, host: str, port: int, address: str, timeout: float) -> http.client.HTTPConnection:
    """A connection to one already-checked address; the Host header and the TLS
    certificate check still use the host name."""
    if scheme == "https":
        return _PinnedHTTPSConnection(host, port, address=address, timeout=timeout)
    return _PinnedHTTPConnection(host, port, address=address, timeout=timeout)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, *, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, *, address: str, timeout: float):
        self.tls_context = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls_context)
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls_context.wrap_socket(raw, server_hostname=self.host)
