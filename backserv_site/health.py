"""Probes, open to anyone (load balancers and orchestrators call them):

- GET /health: the database and the broker (503 naming the one that fails), and the
  workers, reported only.
- GET /health/live: the process answers; it touches nothing else, so a database
  outage never gets a healthy process restarted.
- GET /health/ready: the node can take jobs and see them run: the database, the broker
  and a worker that takes jobs (this process's own threads, or an online server);
  503 naming what is missing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import timedelta

import dramatiq
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _check_broker() -> str:
    broker = dramatiq.get_broker()
    client = getattr(broker, "client", None)
    if client is not None:  # Redis
        client.ping()
    elif hasattr(broker, "connection") and not broker.connection.is_open:
        # RabbitMQ: the property opens (or reuses) this thread's connection.
        raise ConnectionError("RabbitMQ connection is closed")
    return "ok"


def workers_online() -> str:
    """Reported, never a reason for 503: the API takes jobs while workers are away (they
    wait PENDING). "embedded": the workers are threads of this very process."""
    if not settings.DISTRIBUTED and not settings.SERVERS["REGISTER_WORKERS"]:
        return "embedded"
    from django.utils import timezone

    from servers.models import Server, ServerKind, ServerStatus

    servers = settings.SERVERS
    cutoff = timezone.now() - timedelta(seconds=servers["HEARTBEAT_INTERVAL_SECONDS"] * servers["HEARTBEAT_MISSES"])
    alive = (
        Server.objects.filter(kind=ServerKind.WORKER, last_heartbeat_at__gte=cutoff)
        .exclude(status=ServerStatus.OFFLINE)
        .count()
    )
    return f"{alive} online" if alive else "none"


def _checked(checks: dict[str, Callable[[], str]]) -> dict[str, str]:
    """Each check's answer, or the name of the error it raised."""
    answers: dict[str, str] = {}
    for name, check in checks.items():
        try:
            answers[name] = check()
        except Exception as error:
            logger.warning("health check %s failed: %s", name, error)
            answers[name] = f"error: {type(error).__name__}"
    return answers


# What readiness takes for a worker that takes jobs.
_WORKERS_PRESENT = re.compile(r"^(embedded|unregistered|\d+ online)$")


def _check_workers() -> str:
    """Who takes jobs: "embedded" (this process's worker threads), "N online" (servers
    that take jobs), "unregistered" (a fleet whose workers do not register: they cannot
    be seen, and an API never ready would be worse than one that cannot tell), or
    "none", which readiness calls missing."""
    from servers.routing import local_workers_are_present
    from servers.selectors import servers_taking_jobs

    if local_workers_are_present():
        return "embedded"
    taking = len(servers_taking_jobs())
    if taking:
        return f"{taking} online"
    return "unregistered" if settings.DISTRIBUTED and not settings.SERVERS["REGISTER_WORKERS"] else "none"


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    checks = _checked({"database": _check_database, "broker": _check_broker})
    healthy = all(value == "ok" for value in checks.values())
    try:
        workers = workers_online()
    except Exception as error:
        workers = f"error: {type(error).__name__}"
    body = {
        "status": "ok" if healthy else "unavailable",
        "service": "backserv",
        "version": settings.VERSION,
        "checks": checks,
        "workers": workers,
    }
    return JsonResponse(body, status=200 if healthy else 503)


@require_GET
def health_live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok", "service": "backserv", "version": settings.VERSION})


@require_GET
def health_ready(request: HttpRequest) -> JsonResponse:
    checks = _checked({"database": _check_database, "broker": _check_broker, "workers": _check_workers})
    ready = {"database": checks["database"] == "ok", "broker": checks["broker"] == "ok"}
    ready["workers"] = bool(_WORKERS_PRESENT.match(checks["workers"]))
    missing = [name for name, ok in ready.items() if not ok]
    body = {
        "status": "ready" if not missing else "unavailable",
        "service": "backserv",
        "version": settings.VERSION,
        "checks": checks,
        "missing": missing,
    }
    return JsonResponse(body, status=503 if missing else 200)
