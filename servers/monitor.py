"""The health monitor: part of the sweep every worker process and the embedded server
run. Each step is a conditional UPDATE, so any number of processes may run it at once."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from servers.models import Server, ServerKind, ServerStatus
from servers.remote import server_auth_headers
from servers.routing import tasks_route_waiting
from servers.services import server_heartbeat, server_liveness_set, servers_mark_silent_offline, servers_retire_departed
from tasks.models import ACTIVE_STATES

logger = logging.getLogger(__name__)


def servers_poll_health(*, now: datetime | None = None) -> int:
    """GET the health URL of each remote server not heard from for an interval: a 2xx
    answer counts as a heartbeat, anything else makes it degraded (no new jobs)."""
    now = now or timezone.now()
    due = now - timedelta(seconds=settings.SERVERS["HEARTBEAT_INTERVAL_SECONDS"])
    polled = 0
    remotes = Server.objects.filter(kind=ServerKind.REMOTE).exclude(health_url="")
    for server in remotes.filter(Q(last_heartbeat_at__lt=due) | Q(last_heartbeat_at=None)):
        polled += 1
        try:
            response = requests.get(
                server.health_url,
                headers=server_auth_headers(server),
                timeout=settings.SERVERS["REMOTE_TIMEOUT_SECONDS"],
            )
            healthy = response.ok
        except requests.RequestException as error:
            logger.warning("health check of %s failed: %s", server.name, error)
            healthy = False
        if healthy:
            active = server.tasks.filter(state__in=ACTIVE_STATES).count()
            server_heartbeat(server=server, active_tasks=active, metrics=server.metrics)
        else:
            server_liveness_set(
                server_id=server.pk, status=ServerStatus.DEGRADED, only_if=Q(status=ServerStatus.ONLINE)
            )
    return polled


def servers_sweep() -> dict[str, int]:
    return {
        "health_polled": servers_poll_health(),
        "servers_offline": servers_mark_silent_offline(),
        "servers_retired": servers_retire_departed(),
        "routed": tasks_route_waiting(),
    }
