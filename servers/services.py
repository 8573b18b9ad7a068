"""Every write to the server registry and the load balancer."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import dramatiq
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from backserv_site.errors import InvalidInput, StateConflict
from servers.keys import server_key_new
from servers.models import Algorithm, Server, ServerKind, ServerStatus, ServerStatusChange
from servers.routing import load_balancer_locked, route_waiting_on_commit, shared_queue_name
from tasks import services as task_services
from tasks import task_types
from tasks.dispatch import dispatch_on_commit
from tasks.models import ACTIVE_STATES, Task, TaskState

logger = logging.getLogger(__name__)

# What a heartbeat's "status" may say, as the liveness it means.
HEARTBEAT_STATUSES = {
    "online": ServerStatus.ONLINE,
    "healthy": ServerStatus.ONLINE,
    "ok": ServerStatus.ONLINE,
    "degraded": ServerStatus.DEGRADED,
    "unhealthy": ServerStatus.DEGRADED,
}


@dataclass(frozen=True)
class IssuedServer:
    server: Server
    key: str  # shown once, never stored


def server_liveness_set(
    *, server_id: UUID, status: ServerStatus, only_if: Q | None = None, now: datetime | None = None
) -> bool:
    """Change a server's liveness if it differs (and `only_if` still holds), and log the
    change: uptime is measured from these records."""
    now = now or timezone.now()
    with transaction.atomic():
        rows = Server.objects.filter(pk=server_id).exclude(status=status)
        if only_if is not None:
            rows = rows.filter(only_if)
        if rows.update(status=status) != 1:
            return False
        ServerStatusChange.objects.create(server_id=server_id, status=status, at=now)
    return True


def _validate_capabilities(capabilities: list[str]) -> list[str]:
    unknown = sorted(set(capabilities) - set(task_types.names()))
    if unknown:
        raise InvalidInput(
            f"capabilities: unknown task type(s) {', '.join(unknown)}.",
            fields={
                "capabilities": [f"Unknown task type(s): {', '.join(unknown)}. Known: {', '.join(task_types.names())}."]
            },
        )
    return sorted(set(capabilities))


# A job type a remote server runs that is not one of Back.Serv's task types
# ("video-processing", "video"): a plain lowercase name.
OTHER_CAPABILITY = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,49}$")


def _validate_other_capabilities(capabilities: list[str]) -> list[str]:
    bad = sorted(name for name in capabilities if not OTHER_CAPABILITY.match(name))
    if bad:
        message = f"{bad[0]!r} is not a capability name (lowercase letters, digits, _ . : -; at most 50)."
        raise InvalidInput(f"capabilities: {message}", fields={"capabilities": [message]})
    return capabilities


def _new_server(*, name: str, kind: str, now: datetime, **fields: Any) -> IssuedServer:
    lookup, key, key_hash = server_key_new()
    server = Server(name=name, kind=kind, key_prefix=lookup, key_hash=key_hash, registered_at=now, **fields)
    server.queue_name = f"{shared_queue_name()}.{server.pk.hex[:16]}"
    try:
        with transaction.atomic():
            server.save(force_insert=True)
            ServerStatusChange.objects.create(server=server, status=server.status, at=now)
    except IntegrityError:
        raise StateConflict(f"A server named {name!r} is already registered.", code="server_exists") from None
    return IssuedServer(server=server, key=key)


def server_key_rehash(*, server: Server, key_hash: str) -> None:
    """Store the server key's hash under the current SECRET_KEY after it matched under
    a fallback (see accounts.services.token_hash_check). Conditional: concurrent
    requests write once."""
    if Server.objects.filter(pk=server.pk, key_hash=server.key_hash).update(key_hash=key_hash):
        logger.info("server key %s re-hashed under the current SECRET_KEY", server.key_prefix)
    server.key_hash = key_hash


@transaction.atomic
def server_register(
    *,
    name: str,
    kind: str = ServerKind.REMOTE,
    predict_url: str = "",
    health_url: str = "",
    metrics_url: str = "",
    capabilities: list[str],
    other_capabilities: list[str] | None = None,
    groups: list[str] | None = None,
    priority: int = 1,
    max_concurrent: int = 1,
    api_key: str = "",
) -> IssuedServer:
    """Register a server (staff). A remote server needs a predict URL to be sent jobs.
    `capabilities` are Back.Serv task types; a remote server may also declare
    `other_capabilities`, job types it runs that Back.Serv does not (see
    tasks.services.task_submit). `api_key` is sent to it with each job."""
    if kind == ServerKind.REMOTE and not predict_url:
        raise InvalidInput(
            "endpoints.predict is required for a remote server.",
            fields={"endpoints.predict": ["Required for a remote server."]},
        )
    if other_capabilities and kind != ServerKind.REMOTE:
        message = "Only remote servers declare job types other than Back.Serv's task types."
        raise InvalidInput(f"capabilities: {message}", fields={"capabilities": [message]})
    others = _validate_other_capabilities(sorted(set(other_capabilities or [])))
    declared = _validate_capabilities(capabilities) + others
    now = timezone.now()
    issued = _new_server(
        name=name,
        kind=kind,
        now=now,
        predict_url=predict_url,
        health_url=health_url,
        metrics_url=metrics_url,
        api_key=api_key,
        capabilities=sorted(set(declared)),
        groups=sorted(set(groups or [])),
        priority=priority,
        max_concurrent=max_concurrent,
        status=ServerStatus.ONLINE,
        # Counts as the first heartbeat: the monitor gives it the usual grace period.
        last_heartbeat_at=now,
    )
    route_waiting_on_commit()
    logger.info("server %s registered (%s)", name, kind)
    return issued


@transaction.atomic
def server_register_worker(*, name: str, capabilities: list[str], max_concurrent: int) -> Server:
    """A worker of ours announcing itself at start. Its row is kept across restarts (by
    name), with the operator's settings: groups, priority, maintenance."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "capabilities": _validate_capabilities(capabilities),
        "max_concurrent": max(1, max_concurrent),
        "last_heartbeat_at": now,
    }
    if not Server.objects.filter(name=name).update(kind=ServerKind.WORKER, registered_at=now, **fields):
        # Workers write the database directly; their key is never used, so not kept.
        try:
            _new_server(name=name, kind=ServerKind.WORKER, now=now, status=ServerStatus.ONLINE, **fields)
        except StateConflict:
            # A twin process with the same name got there first.
            Server.objects.filter(name=name).update(kind=ServerKind.WORKER, registered_at=now, **fields)
    server_id = Server.objects.values_list("pk", flat=True).get(name=name)
    server_liveness_set(server_id=server_id, status=ServerStatus.ONLINE, now=now)
    route_waiting_on_commit()
    logger.info("worker server %s online (%d slots, %s)", name, max_concurrent, capabilities)
    return Server.objects.get(name=name)


def server_heartbeat(
    *, server: Server, status: str = "online", active_tasks: int = 0, metrics: dict[str, Any] | None = None
) -> Server:
    liveness = HEARTBEAT_STATUSES.get(status)
    if liveness is None:
        raise InvalidInput(
            f"status must be one of {', '.join(HEARTBEAT_STATUSES)}.",
            fields={"status": [f"Must be one of {', '.join(HEARTBEAT_STATUSES)}."]},
        )
    now = timezone.now()
    with transaction.atomic():
        updated = Server.objects.filter(pk=server.pk).update(
            last_heartbeat_at=now,
            reported_active_tasks=max(0, active_tasks),
            metrics=metrics or {},
        )
        if not updated:
            raise StateConflict("This server is no longer registered.", code="server_unregistered")
        if server.kind == ServerKind.REMOTE:
            # A remote server's jobs are alive as long as it is: no worker renews them.
            deadline = now + timedelta(seconds=settings.BACKSERV["LEASE_SECONDS"])
            Task.objects.filter(server=server, state__in=ACTIVE_STATES).update(lease_expires_at=deadline)
        changed = server_liveness_set(server_id=server.pk, status=liveness, now=now)
        if changed and liveness == ServerStatus.ONLINE:
            route_waiting_on_commit()
    server.refresh_from_db()
    return server


@transaction.atomic
def server_set_maintenance(*, server: Server, maintenance: bool, reason: str = "") -> Server:
    """In maintenance a server gets no new jobs and finishes the ones it runs; those
    routed to it but not started go elsewhere."""
    Server.objects.filter(pk=server.pk).update(
        maintenance=maintenance, maintenance_reason=reason if maintenance else ""
    )
    if maintenance:
        _unroute_waiting_jobs(server=server)
    else:
        route_waiting_on_commit()
    server.refresh_from_db()
    logger.info("server %s maintenance %s (%s)", server.name, "on" if maintenance else "off", reason)
    return server


@transaction.atomic
def server_go_offline(*, server: Server) -> None:
    """A worker shutting down cleanly: its running jobs finished, the rest go elsewhere."""
    server_liveness_set(server_id=server.pk, status=ServerStatus.OFFLINE)
    _unroute_waiting_jobs(server=server)


def server_unregister(*, server: Server) -> None:
    """Same as the server going silent: its jobs go elsewhere; then the row goes."""
    servers_release_jobs(server=server, reason="server unregistered")
    with transaction.atomic():
        Server.objects.filter(pk=server.pk).delete()
        route_waiting_on_commit()
    logger.info("server %s unregistered", server.name)


def servers_retire_departed(*, now: datetime | None = None) -> int:
    """Remove the rows of worker servers offline for longer than OFFLINE_RETENTION_HOURS
    and holding no unfinished job (hosts gone for good), with their queues: the messages
    left there went stale when the server's jobs were routed elsewhere. A worker that
    comes back later registers afresh. Remote servers, which staff registered, stay."""
    hours = settings.SERVERS["OFFLINE_RETENTION_HOURS"]
    if hours <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(hours=hours)
    departed = (
        Server.objects.filter(kind=ServerKind.WORKER, status=ServerStatus.OFFLINE, last_heartbeat_at__lt=cutoff)
        .exclude(tasks__state__in=[TaskState.PENDING, *ACTIVE_STATES])
        .values_list("pk", "name", "queue_name")
    )
    retired = 0
    for server_id, name, queue_name in departed:
        # Conditional, as every sweep: another process may have retired it, or it came back.
        still = Server.objects.filter(pk=server_id, status=ServerStatus.OFFLINE, last_heartbeat_at__lt=cutoff)
        gone, _ = still.delete()
        if not gone:
            continue
        retired += 1
        if queue_name:
            try:
                dramatiq.get_broker().flush(queue_name)
            except Exception:
                # A queue this broker never held (RabbitMQ refuses to purge it): nothing stale.
                logger.debug("could not flush queue %s", queue_name, exc_info=True)
        logger.info("server %s offline since before %s: removed with its queue %s", name, cutoff, queue_name)
    return retired


def servers_mark_silent_offline(*, now: datetime | None = None) -> int:
    """Servers silent for more than HEARTBEAT_MISSES intervals go offline and their jobs
    go elsewhere. Safe in many processes: the status change is conditional on the
    heartbeat read, so one process wins and releases the jobs."""
    now = now or timezone.now()
    config = settings.SERVERS
    cutoff = now - timedelta(seconds=config["HEARTBEAT_INTERVAL_SECONDS"] * config["HEARTBEAT_MISSES"])
    silent = Server.objects.exclude(status=ServerStatus.OFFLINE).filter(last_heartbeat_at__lt=cutoff)
    moved = 0
    for server in silent:
        unchanged = Q(status=server.status, last_heartbeat_at=server.last_heartbeat_at)
        if server_liveness_set(server_id=server.pk, status=ServerStatus.OFFLINE, only_if=unchanged, now=now):
            logger.warning("server %s silent since %s: offline", server.name, server.last_heartbeat_at)
            servers_release_jobs(server=server, reason="server offline")
            moved += 1
    return moved


def servers_release_jobs(*, server: Server, reason: str) -> int:
    """Claimed or running jobs of a lost server back to PENDING (attempt + 1), and every
    unstarted one routed elsewhere."""
    released = 0
    for task in Task.objects.filter(server=server, state__in=ACTIVE_STATES).only(
        "pk", "worker", "attempts", "cancel_requested", "queued_at", "started_at"
    ):
        if task_services.task_release(task=task, reason=reason):
            released += 1
    with transaction.atomic():
        released += _unroute_waiting_jobs(server=server)
    return released


def _unroute_waiting_jobs(*, server: Server) -> int:
    waiting = Task.objects.filter(server=server, state=TaskState.PENDING)
    task_ids = list(waiting.values_list("pk", flat=True))
    # Conditional on PENDING: a job claimed meanwhile stays with the server running it.
    waiting.filter(pk__in=task_ids).update(server=None, queue_name="", wait_reason="", updated_at=timezone.now())
    for task_id in task_ids:
        # Routes the job afresh; one claimed meanwhile is left alone.
        dispatch_on_commit(task_id=task_id)
    return len(task_ids)


@transaction.atomic
def load_balancer_set_algorithm(*, algorithm: str) -> str:
    if algorithm not in Algorithm.values:
        raise InvalidInput(
            f"algorithm must be one of {', '.join(Algorithm.values)}.",
            fields={"algorithm": [f"Must be one of {', '.join(Algorithm.values)}."]},
        )
    balancer = load_balancer_locked()
    balancer.algorithm = algorithm
    balancer.save(update_fields=["algorithm", "updated_at"])
    logger.info("load balancer algorithm: %s", algorithm)
    return algorithm
