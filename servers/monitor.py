"""The health monitor: part of the sweep every worker process and the embedded server
run. Each step is a conditional UPDATE, so any number of processes may run it at once."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from servers.models import Server, ServerKind, ServerStatus
from servers.remote import remote_session, server_auth_headers
from servers.routing import tasks_route_waiting
from servers.services import server_heartbeat, server_liveness_set, servers_mark_silent_offline, servers_retire_departed
from tasks.models import ACTIVE_STATES

logger = logging.getLogger(__name__)

HEALTH_CHECKS_AT_ONCE = 16


def servers_poll_health(*, now: datetime | None = None) -> int:
    """GET the health URL of each remote server not heard from for an interval: a 2xx
    answer counts as a heartbeat, anything else makes it degraded (no new jobs). The
    checks run side by side, each for at most HEALTH_TIMEOUT_SECONDS: a server that
    hangs costs the sweep that long once, not once per server."""
    now = now or timezone.now()
    due = now - timedelta(seconds=settings.SERVERS["HEARTBEAT_INTERVAL_SECONDS"])
    remotes = Server.objects.filter(kind=ServerKind.REMOTE).exclude(health_url="")
    servers = list(remotes.filter(Q(last_heartbeat_at__lt=due) | Q(last_heartbeat_at=None)))
    if not servers:
        return 0
    # Only the HTTP runs on the pool's threads; the database is written from this one.
    with ThreadPoolExecutor(max_workers=min(HEALTH_CHECKS_AT_ONCE, len(servers))) as pool:
        answers = list(pool.map(_healthy, servers))
    for server, healthy in zip(servers, answers, strict=True):
        if healthy:
            active = server.tasks.filter(state__in=ACTIVE_STATES).count()
            server_heartbeat(server=server, active_tasks=active, metrics=server.metrics)
        else:
            server_liveness_set(
                server_id=server.pk, status=ServerStatus.DEGRADED, only_if=Q(status=ServerStatus.ONLINE)
            )
    return len(servers)


def _healthy(server: Server) -> bool:
    try:
        response = remote_session().get(
            server.health_url, headers=server_auth_headers(server), timeout=settings.SERVERS["HEALTH_TIMEOUT_SECONDS"]
        )
    except requests.RequestException as error:
        logger.warning("health check of %s failed: %s", server.name, error)
        return False
    return response.ok


def servers_sweep() -> dict[str, int]:
    return {
        "health_polled": servers_poll_health(),
        "servers_offline": servers_mark_silent_offline(),
        "servers_retired": servers_retire_departed(),
        "routed": tasks_route_waiting(),
    }
