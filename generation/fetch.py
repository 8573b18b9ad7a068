"""Fetching an input image from an http(s) URL without letting a job reach inside the
network it runs in.

Every address a host name resolves to is checked, and the connection goes to the checked
address itself (a second lookup could answer differently: DNS rebinding). Each redirect
hop is checked the same way. Built on http.client because it exposes the connection step
and ignores proxy variables; the usual clients resolve and connect in one call.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from urllib.parse import urljoin, urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from generation.pipelines.base import PipelineInputError

INPUT_FETCH_FAILED = "INPUT_FETCH_FAILED"
INPUT_ADDRESS_REFUSED = "INPUT_ADDRESS_REFUSED"
INPUT_TOO_LARGE = "INPUT_TOO_LARGE"

_REDIRECTS = {301, 302, 303, 307, 308}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_USER_AGENT = "Back.Serv input fetcher"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _config(name: str) -> object:
    return settings.GENERATION[name]


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    try:
        return [ipaddress.ip_network(cidr, strict=False) for cidr in settings.GENERATION["INPUT_ALLOWED_NETWORKS"]]
    except ValueError as error:
        raise ImproperlyConfigured(f"INPUT_ALLOWED_NETWORKS: {error}") from None


def address_refusal(address: str) -> str | None:
    """Why a job may not connect to this IP address, or None when it may."""
    ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in allowed_networks()):
        return None
    # is_global alone lets multicast through.
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        return f"{ip} is not a public address; only public addresses may be fetched."
    return None


def fetch_url(url: str) -> bytes:
    """The body of a 200 response to GET url, following at most INPUT_MAX_REDIRECTS
    redirects, within INPUT_FETCH_TIMEOUT_SECONDS in all and INPUT_MAX_BYTES."""
    deadline = time.monotonic() + float(_config("INPUT_FETCH_TIMEOUT_SECONDS"))
    max_redirects = int(_config("INPUT_MAX_REDIRECTS"))
    for _ in range(max_redirects + 1):
        response, connection = _get(url, deadline)
        try:
            if response.status in _REDIRECTS:
                location = response.getheader("Location")
                if not location:
                    raise PipelineInputError(INPUT_FETCH_FAILED, f"{url} redirected without a Location.")
                url = urljoin(url, location)
                continue
            if response.status != 200:
                raise PipelineInputError(INPUT_FETCH_FAILED, f"{url} answered HTTP {response.status}.")
            return _read_body(response, connection, url, deadline)
        finally:
            connection.close()
    raise PipelineInputError(INPUT_FETCH_FAILED, f"More than {max_redirects} redirects; last was to {url}.")


def _get(url: str, deadline: float) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise PipelineInputError(INPUT_FETCH_FAILED, f"Only http(s) URLs can be fetched, got {url!r}.")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise PipelineInputError(INPUT_FETCH_FAILED, f"Bad port in {url!r}.") from None
    errors = []
    for address in _resolve(parts.hostname, port):
        connection = _open_connection(parts.scheme, parts.hostname, port, address, _remaining(deadline))
        try:
            connection.request(
                "GET",
                (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                headers={"User-Agent": _USER_AGENT, "Accept": "image/*"},
            )
            return connection.getresponse(), connection
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            errors.append(f"{address}: {error}")
    raise PipelineInputError(INPUT_FETCH_FAILED, f"Could not fetch {url} ({'; '.join(errors)}).")


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise PipelineInputError(INPUT_FETCH_FAILED, f"Cannot resolve {host}: {error}.") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    # Any refused address refuses the host: a name that also points inside is not trusted.
    for address in addresses:
        refusal = address_refusal(address)
        if refusal:
            raise PipelineInputError(INPUT_ADDRESS_REFUSED, f"{host} resolves to {refusal}")
    return addresses


def _read_body(
    response: http.client.HTTPResponse, connection: http.client.HTTPConnection, url: str, deadline: float
) -> bytes:
    limit = int(_config("INPUT_MAX_BYTES"))
    declared = response.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PipelineInputError(INPUT_TOO_LARGE, f"{url} is {declared} bytes; the limit is {limit}.")
    chunks: list[bytes] = []
    received = 0
    while True:
        if connection.sock is not None:
            connection.sock.settimeout(_remaining(deadline))
        try:
            # read1 returns after one receive, so a trickling server cannot outlast the deadline.
            chunk = response.read1(64 * 1024)
        except (OSError, http.client.HTTPException) as error:
            raise PipelineInputError(INPUT_FETCH_FAILED, f"Reading {url} failed: {error}.") from None
        if not chunk:
            return b"".join(chunks)
        received += len(chunk)
        if received > limit:
            raise PipelineInputError(INPUT_TOO_LARGE, f"{url} is larger than the limit of {limit} bytes.")
        chunks.append(chunk)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise PipelineInputError(INPUT_FETCH_FAILED, "Fetching the input took longer than the time allowed.")
    return left


def _open_connection(scheme: str, host: str, port: int, address: str, timeout: float) -> http.client.HTTPConnection:
    """A connection to one already-checked address; the Host header and the TLS
    certificate check still use the URL's host name."""
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
