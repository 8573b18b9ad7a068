"""Delivering a job's output to a URL the client gave (`output_url`; the task-manager
document's args[1] of image_super_resolution_pipeline): an HTTP PUT of the first
output's bytes, as to a presigned S3 URL.

The URL is the client's, so it goes through backserv_site.netsafety's rule: every
address the host resolves to is checked, the connection goes to a checked address, and
redirects are not followed (a redirect could lead anywhere). Connection errors and 5xx
answers are tried again a few times; when the PUT still fails, the job fails with
OUTPUT_UPLOAD_FAILED naming the URL's host and the answer, and its outputs are dropped.
"""

from __future__ import annotations

import http.client
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from rest_framework import serializers

from backserv_site import netsafety
from generation.pipelines.base import Output, PipelineInputError

logger = logging.getLogger(__name__)

OUTPUT_UPLOAD_FAILED = "OUTPUT_UPLOAD_FAILED"
_ATTEMPTS = 3
_USER_AGENT = "Back.Serv output upload"
_MAX_URL_LENGTH = 2048


def url_refusal_at_submit(url: str) -> str | None:
    """Why a client's http(s) URL is refused before any lookup, or None: its syntax, and
    its host when that is a literal address (a host name is judged on every lookup when
    the request is made)."""
    if len(url) > _MAX_URL_LENGTH:
        return f"A URL may have at most {_MAX_URL_LENGTH} characters."
    try:
        _, host, _, _ = netsafety.check_url_syntax(url)
    except netsafety.UnsafeURL as error:
        return str(error)
    try:
        return netsafety.address_refusal(host.strip("[]"))
    except ValueError:
        return None  # a host name, not an address


class OutputUrlField(serializers.CharField):
    """An http(s) URL to PUT the result to."""

    def to_internal_value(self, data: Any) -> str:
        url = super().to_internal_value(data)
        refusal = url_refusal_at_submit(url)
        if refusal:
            raise serializers.ValidationError(refusal)
        return url


def output_put(*, url: str, output: Output) -> int:
    """PUT the output to url; the 2xx status, or PipelineInputError(OUTPUT_UPLOAD_FAILED)."""
    host = urlsplit(url).hostname or url
    failure = ""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            status = _put_once(url, output)
        except netsafety.UnsafeURL as error:
            message = f"Uploading the result to {host} was refused: {error}"
            raise PipelineInputError(OUTPUT_UPLOAD_FAILED, message) from None
        except (OSError, http.client.HTTPException) as error:
            failure = f"{type(error).__name__}: {error}"
        else:
            if 200 <= status < 300:
                return status
            failure = f"it answered HTTP {status}"
            if status < 500 and status not in (408, 429):
                break
        logger.warning("PUT of the result to %s failed (%s), attempt %d of %d", host, failure, attempt, _ATTEMPTS)
        if attempt < _ATTEMPTS:
            time.sleep(settings.GENERATION["OUTPUT_UPLOAD_RETRY_SECONDS"] * attempt)
    raise PipelineInputError(OUTPUT_UPLOAD_FAILED, f"Uploading the result to {host} failed: {failure}.")


def _put_once(url: str, output: Output) -> int:
    target = netsafety.check_url(url)
    timeout = settings.GENERATION["OUTPUT_UPLOAD_TIMEOUT_SECONDS"]
    errors = []
    for address in target.addresses:
        connection = netsafety.pinned_connection(
            scheme=target.scheme, host=target.host, port=target.port, address=address, timeout=timeout
        )
        try:
            connection.request(
                "PUT",
                target.path,
                body=output.data,
                headers={"Content-Type": output.content_type, "User-Agent": _USER_AGENT},
            )
            response = connection.getresponse()
            response.read(64 * 1024)
            return response.status
        except (OSError, http.client.HTTPException) as error:
            errors.append(f"{address}: {error}")
        finally:
            connection.close()
    raise ConnectionError("; ".join(errors))
