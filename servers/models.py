from __future__ import annotations

import uuid

from django.core.validators import MinValueValidator
from django.db import models


class ServerKind(models.TextChoices):
    # A Dramatiq worker process of ours: it consumes its own queue.
    WORKER = "worker"
    # An HTTP GPU server: a worker forwards its jobs to `predict_url`.
    REMOTE = "remote"


class ServerStatus(models.TextChoices):
    """What the API shows. Liveness (online/offline/degraded) and maintenance are stored
    apart, so an operator's maintenance survives the server going away and coming back."""

    ONLINE = "online"
    OFFLINE = "offline"
    MAINTENANCE = "maintenance"
    DEGRADED = "degraded"


LIVENESS_STATUSES = [ServerStatus.ONLINE, ServerStatus.OFFLINE, ServerStatus.DEGRADED]


class Server(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=ServerKind.choices, default=ServerKind.WORKER)
    predict_url = models.URLField(blank=True)
    health_url = models.URLField(blank=True)
    metrics_url = models.URLField(blank=True)
    # The server's own key for calls we make to it (the distributed-system document's
    # apiKey): sent as `Authorization: Bearer` with each job and health check. Kept in
    # the clear because it has to be sent; it opens nothing here.
    api_key = models.CharField(max_length=500, blank=True)
    # Task types it runs; a remote server may also declare other job types it runs itself.
    capabilities = models.JSONField(default=list, blank=True)
    groups = models.JSONField(default=list, blank=True)
    priority = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])  # weight
    max_concurrent = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    status = models.CharField(
        max_length=12,
        choices=[(value, value) for value in LIVENESS_STATUSES],
        default=ServerStatus.ONLINE,
    )
    maintenance = models.BooleanField(default=False)
    maintenance_reason = models.CharField(max_length=500, blank=True)
    # The server's own Dramatiq queue (workers) or routing identity (remote servers).
    queue_name = models.CharField(max_length=100, unique=True)
    key_prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    registered_at = models.DateTimeField()
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)  # as last reported (cpu, memory, gpu)
    reported_active_tasks = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} [{self.display_status}]"

    @property
    def display_status(self) -> str:
        if self.maintenance and self.status != ServerStatus.OFFLINE:
            return ServerStatus.MAINTENANCE
        return self.status


class Algorithm(models.TextChoices):
    ROUND_ROBIN = "round-robin"
    LEAST_CONNECTIONS = "least-connections"
    WEIGHTED_ROUND_ROBIN = "weighted-round-robin"
    RANDOM = "random"


class LoadBalancer(models.Model):
    """One row (pk 1). Routing locks it, so routing decisions happen one at a time and
    each sees the assignments of the ones before it. A submit decides without the lock
    and saves its decision only if `decisions` has not moved since it read the row
    (servers.routing.plan_new_task)."""

    algorithm = models.CharField(max_length=30, choices=Algorithm.choices, default=Algorithm.ROUND_ROBIN)
    # The algorithms' memory between decisions: round-robin's last pick and the smooth
    # weighted round-robin's current weights, by server id.
    state = models.JSONField(default=dict, blank=True)
    # How many times a job was given a server: every decision adds one.
    decisions = models.BigIntegerField(default=0, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "load balancer"
        # One row: the admin's index lists it as the one thing it is.
        verbose_name_plural = "load balancer"

    def __str__(self) -> str:
        return f"load balancer ({self.algorithm})"


class ServerStatusChange(models.Model):
    """A server's liveness changing (online, offline, degraded): the record its uptime
    is measured from. Written only when the status really changes."""

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="status_changes")
    status = models.CharField(max_length=12, choices=[(value, value) for value in LIVENESS_STATUSES])
    at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["server", "at"], name="server_status_change_at")]

    def __str__(self) -> str:
        return f"{self.server_id} {self.status} at {self.at:%Y-%m-%d %H:%M:%S}"
