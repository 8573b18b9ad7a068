"""Reads of the registry: listings, per-server metrics, the load balancer's picture."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Q
from django.utils import timezone

from servers import middleware
from servers.models import LoadBalancer, Server, ServerKind, ServerStatus
from servers.routing import local_workers_are_present
from tasks.models import ACTIVE_STATES, Task, TaskState


def milliseconds_since(moment: datetime | None, now: datetime) -> int | None:
    return None if moment is None else max(0, int((now - moment).total_seconds() * 1000))


def server_uptime(*, server: Server, start: datetime, end: datetime, now: datetime | None = None) -> float | None:
    """The fraction of [start, end) the server was online, counted from its registration
    and up to now; None when that leaves no time at all."""
    now = now or timezone.now()
    window_start, window_end = max(start, server.registered_at), min(end, now)
    if window_end <= window_start:
        return None
    changes = server.status_changes.order_by("at")
    status = changes.filter(at__lte=window_start).values_list("status", flat=True).last() or ServerStatus.ONLINE
    online_seconds, since = 0.0, window_start
    for at, next_status in changes.filter(at__gt=window_start, at__lt=window_end).values_list("at", "status"):
        if status == ServerStatus.ONLINE:
            online_seconds += (at - since).total_seconds()
        status, since = next_status, at
    if status == ServerStatus.ONLINE:
        online_seconds += (window_end - since).total_seconds()
    return round(online_seconds / (window_end - window_start).total_seconds(), 4)


def servers_list(*, status: str | None = None, group: str | None = None) -> list[Server]:
    servers = Server.objects.all()
    if status == ServerStatus.MAINTENANCE:
        servers = servers.filter(maintenance=True).exclude(status=ServerStatus.OFFLINE)
    elif status == ServerStatus.OFFLINE:
        servers = servers.filter(status=ServerStatus.OFFLINE)
    elif status:
        servers = servers.filter(status=status, maintenance=False)
    # Groups are a JSON list, which SQLite cannot search; a registry is small.
    return [server for server in servers if not group or group in server.groups]


def servers_taking_jobs(*, now: datetime | None = None) -> list[Server]:
    """Servers a job may be routed to now: online, not in maintenance, and heard from
    (a heartbeat, or a remote server's health check) within HEARTBEAT_MISSES intervals,
    so a fleet whose sweeps stopped does not count a silent worker as online."""
    now = now or timezone.now()
    config = settings.SERVERS
    cutoff = now - timedelta(seconds=config["HEARTBEAT_INTERVAL_SECONDS"] * config["HEARTBEAT_MISSES"])
    return list(Server.objects.filter(status=ServerStatus.ONLINE, maintenance=False, last_heartbeat_at__gte=cutoff))


def task_types_runnable() -> set[str]:
    """What some worker can run now: the types an online server declares, and those
    this process's own worker threads (embedded mode) have the libraries and models for."""
    runnable = {capability for server in servers_taking_jobs() for capability in server.capabilities}
    if local_workers_are_present():
        runnable.update(middleware.worker_capabilities())
    return runnable


def remote_servers_declaring(capabilities: Iterable[str]) -> list[Server]:
    """Registered remote servers (whatever their status now) declaring every capability."""
    wanted = set(capabilities)
    # A JSON list, which SQLite cannot search; a registry is small.
    return [server for server in Server.objects.filter(kind=ServerKind.REMOTE) if wanted <= set(server.capabilities)]


def remote_capabilities_for_type(job_type: str) -> list[str]:
    """What a job of another type must find declared when its client names no
    capabilities: the type itself, or else its family (`video` for `video-processing`,
    as the distributed-system document's server declares `video` and is sent
    `video-processing` jobs)."""
    family = re.split(r"[-_.:/]", job_type, maxsplit=1)[0]
    if not family or family == job_type or remote_servers_declaring([job_type]):
        return [job_type]
    return [family] if remote_servers_declaring([family]) else [job_type]


def remote_capabilities_declared() -> set[str]:
    return {name for server in Server.objects.filter(kind=ServerKind.REMOTE) for name in server.capabilities}


def server_task_counts(server_ids: Iterable[UUID]) -> dict[UUID, dict[str, int]]:
    """Per server: jobs claimed or running ("active") and routed but not claimed yet ("queued")."""
    rows = (
        Task.objects.filter(server_id__in=list(server_ids), state__in=[TaskState.PENDING, *ACTIVE_STATES])
        .values("server_id")
        .annotate(
            active=Count("pk", filter=Q(state__in=ACTIVE_STATES)),
            queued=Count("pk", filter=Q(state=TaskState.PENDING)),
        )
    )
    return {row["server_id"]: {"active": row["active"], "queued": row["queued"]} for row in rows}


def server_metrics(*, server: Server) -> dict[str, Any]:
    now = timezone.now()
    finished = server.tasks.filter(state__in=[TaskState.SUCCESS, TaskState.FAILURE, TaskState.TIMEOUT])
    counts = finished.aggregate(
        processed=Count("pk"),
        succeeded=Count("pk", filter=Q(state=TaskState.SUCCESS)),
        failed=Count("pk", filter=Q(state__in=[TaskState.FAILURE, TaskState.TIMEOUT])),
    )
    average = (
        finished.filter(state=TaskState.SUCCESS, started_at__isnull=False)
        .annotate(duration=ExpressionWrapper(F("completed_at") - F("started_at"), output_field=DurationField()))
        .aggregate(average=Avg("duration"))["average"]
    )
    load = server_task_counts([server.pk]).get(server.pk, {"active": 0, "queued": 0})
    return {
        "uptime": milliseconds_since(server.registered_at, now),
        "tasks_processed": counts["processed"],
        "success_count": counts["succeeded"],
        "failure_count": counts["failed"],
        "average_processing_time": int(average.total_seconds() * 1000) if average is not None else None,
        "active_tasks": load["active"],
        "queued_tasks": load["queued"],
        "current_load": round((load["active"] + load["queued"]) / server.max_concurrent, 4),
        "reported": server.metrics,
    }


def load_balancer_status() -> dict[str, Any]:
    balancer = LoadBalancer.objects.filter(pk=1).first() or LoadBalancer()
    servers = list(Server.objects.exclude(status=ServerStatus.OFFLINE))
    counts = server_task_counts(server.pk for server in servers)
    distribution = {}
    for server in servers:
        load = counts.get(server.pk, {"active": 0, "queued": 0})
        distribution[str(server.pk)] = {
            "name": server.name,
            "status": server.display_status,
            "load": round((load["active"] + load["queued"]) / server.max_concurrent, 4),
            "active_tasks": load["active"],
            "queued_tasks": load["queued"],
            "max_concurrent": server.max_concurrent,
            "weight": server.priority,
        }
    loads = [entry["load"] for entry in distribution.values()]
    return {
        "algorithm": balancer.algorithm,
        "server_distribution": distribution,
        "total_active_tasks": sum(entry["active_tasks"] for entry in distribution.values()),
        "waiting_for_server": Task.objects.filter(state=TaskState.PENDING, queue_name="").count(),
        "average_load": round(sum(loads) / len(loads), 4) if loads else 0.0,
    }
