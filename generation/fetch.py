"""Fetching an input image from an http(s) URL without letting a job reach inside the
network it runs in.

Every hop (the URL and each redirect) is resolved and checked by backserv_site.netsafety,
and the connection goes to the checked address itself (a second lookup could answer
differently: DNS rebinding). This module adds what is specific to images: the redirect
loop, one deadline for all of it, the byte cap and the INPUT_* error codes.
"""

from __future__ import annotations

import http.client
import time
from urllib.parse import urljoin, urlsplit

from django.conf import settings

from backserv_site import netsafety
from generation.pipelines.base import PipelineInputError

INPUT_FETCH_FAILED = "INPUT_FETCH_FAILED"
# The input's server could not be reached, timed out, or answered 5xx or 429: worth
# another attempt, unlike a 404 or a refused address (tasks.policy).
INPUT_FETCH_UNAVAILABLE = "INPUT_FETCH_UNAVAILABLE"
INPUT_ADDRESS_REFUSED = "INPUT_ADDRESS_REFUSED"
INPUT_TOO_LARGE = "INPUT_TOO_LARGE"

_REDIRECTS = {301, 302, 303, 307, 308}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_USER_AGENT = "Back.Serv input fetcher"


def _config(name: str) -> object:
    return settings.GENERATION[name]


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
                code = (
                    INPUT_FETCH_UNAVAILABLE if response.status >= 500 or response.status == 429 else INPUT_FETCH_FAILED
                )
                raise PipelineInputError(code, f"{url} answered HTTP {response.status}.")
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
        connection = netsafety.pinned_connection(
            scheme=parts.scheme, host=parts.hostname, port=port, address=address, timeout=_remaining(deadline)
        )
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
    raise PipelineInputError(INPUT_FETCH_UNAVAILABLE, f"Could not fetch {url} ({'; '.join(errors)}).")


def _resolve(host: str, port: int) -> tuple[str, ...]:
    try:
        return netsafety.resolve(host, port)
    except netsafety.RefusedAddress as error:
        raise PipelineInputError(INPUT_ADDRESS_REFUSED, str(error)) from None
    except netsafety.UnsafeURL as error:
        raise PipelineInputError(INPUT_FETCH_FAILED, str(error)) from None


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
            raise PipelineInputError(INPUT_FETCH_UNAVAILABLE, f"Reading {url} failed: {error}.") from None
        if not chunk:
            return b"".join(chunks)
        received += len(chunk)
        if received > limit:
            raise PipelineInputError(INPUT_TOO_LARGE, f"{url} is larger than the limit of {limit} bytes.")
        chunks.append(chunk)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise PipelineInputError(INPUT_FETCH_UNAVAILABLE, "Fetching the input took longer than the time allowed.")
    return left
