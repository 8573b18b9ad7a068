"""GET /health: is this node able to take jobs? Open to anyone (load balancers probe it)."""

from __future__ import annotations

import logging
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


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {}
    for name, check in (("database", _check_database), ("broker", _check_broker)):
        try:
            checks[name] = check()
        except Exception as error:
            logger.warning("health check %s failed: %s", name, error)
            checks[name] = f"error: {type(error).__name__}"
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
