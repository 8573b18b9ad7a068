"""GET /metrics: Prometheus exposition of request, database and job metrics.

Open to staff API tokens, to `Authorization: Bearer <METRICS_BEARER_TOKEN>` when that
is set, and to loopback callers (a Prometheus agent on the same host) that no proxy
forwarded, unless METRICS_ALLOW_LOOPBACK is off (its default behind a TLS proxy): behind
a reverse proxy on the same host every client's address is loopback. In
multiprocess mode (PROMETHEUS_MULTIPROC_DIR) any process answers for every process of
the host: each writes its own files there and the scrape sums them.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import shutil
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from rest_framework import exceptions

from accounts.authentication import ApiTokenAuthentication
from tasks.metrics import QueueCollector

logger = logging.getLogger(__name__)


def metrics_multiprocess_dir_reset() -> None:
    """Empty PROMETHEUS_MULTIPROC_DIR; call once at start, before any process of the
    host writes metrics (files left by a previous run would be summed in)."""
    directory = settings.PROMETHEUS_MULTIPROC_DIR
    if not directory:
        return
    path = Path(directory)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


# Set by proxies, never by a scraper calling directly: a request that carries one came
# through a proxy, so its peer address is the proxy's, not the client's.
_FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


def _is_trusted_loopback(request: HttpRequest) -> bool:
    if not settings.METRICS_ALLOW_LOOPBACK or any(header in request.META for header in _FORWARDING_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def _has_metrics_secret(request: HttpRequest) -> bool:
    secret = settings.METRICS_BEARER_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return bool(secret) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), secret)


def _is_staff_token(request: HttpRequest) -> bool:
    try:
        found = ApiTokenAuthentication().authenticate(request)  # type: ignore[arg-type]
    except exceptions.AuthenticationFailed:
        return False
    return found is not None and found[0].is_staff


def metrics_allowed(request: HttpRequest) -> bool:
    return _is_trusted_loopback(request) or _has_metrics_secret(request) or _is_staff_token(request)


def exposition() -> bytes:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    # Read from the database at scrape time, so not part of any process' files.
    queued = CollectorRegistry()
    queued.register(QueueCollector())
    return generate_latest(registry) + generate_latest(queued)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        detail = "Metrics are open to staff tokens, the metrics bearer token and (unless behind a proxy) loopback."
        body = {"detail": detail, "code": "forbidden"}
        return JsonResponse(body, status=403)
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
