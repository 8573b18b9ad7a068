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
    capabilities = models.JSONField(default=list, blank=True)  # task types it runs
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
    each sees the assignments of the ones before it."""

    algorithm = models.CharField(max_length=30, choices=Algorithm.choices, default=Algorithm.ROUND_ROBIN)
    # The algorithms' memory between decisions: round-robin's last pick and the smooth
    # weighted round-robin's current weights, by server id.
    state = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "load balancer"

    def __str__(self) -> str:
        return f"load balancer ({self.algorithm})"
