from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class TaskState(models.TextChoices):
    PENDING = "PENDING"
    RECEIVED = "RECEIVED"
    STARTED = "STARTED"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    TIMEOUT = "TIMEOUT"
    REVOKED = "REVOKED"


ACTIVE_STATES = frozenset({TaskState.RECEIVED, TaskState.STARTED})
UNFINISHED_STATES = frozenset({TaskState.PENDING, *ACTIVE_STATES})
TERMINAL_STATES = frozenset({TaskState.SUCCESS, TaskState.FAILURE, TaskState.TIMEOUT, TaskState.REVOKED})
RETRYABLE_STATES = frozenset({TaskState.FAILURE, TaskState.TIMEOUT, TaskState.REVOKED})

# Every state change the services may make, as target -> the states it may come from.
# A service's conditional UPDATE names these sources in its WHERE clause, so whichever
# of two racing writers commits second finds the row moved on and changes nothing.
TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.PENDING: frozenset({*ACTIVE_STATES, *RETRYABLE_STATES}),
    TaskState.RECEIVED: frozenset({TaskState.PENDING}),
    TaskState.STARTED: frozenset({TaskState.RECEIVED}),
    TaskState.SUCCESS: frozenset({TaskState.STARTED}),
    TaskState.FAILURE: frozenset(ACTIVE_STATES),
    TaskState.TIMEOUT: frozenset(UNFINISHED_STATES),
    TaskState.REVOKED: frozenset(UNFINISHED_STATES),
}


class Task(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tasks")
    # A label for the API consumer's own end user ("user_id" in the Back.Serv API).
    user_label = models.CharField(max_length=200, blank=True)
    task_type = models.CharField(max_length=50)
    params = models.JSONField(default=dict)
    priority = models.PositiveSmallIntegerField(default=5, validators=[MinValueValidator(0), MaxValueValidator(10)])
    state = models.CharField(max_length=10, choices=TaskState.choices, default=TaskState.PENDING)
    progress = models.FloatField(default=0.0)
    result = models.JSONField(null=True, blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)

    # The Dramatiq queue its messages go to; "" while it waits for a server to be routed to.
    queue_name = models.CharField(max_length=100, blank=True)
    # Routing: the server it was sent to, the server group the client asked for, and why
    # it is not routed yet (WAITING_FOR_SERVER) if it is not.
    server = models.ForeignKey("servers.Server", null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks")
    group = models.CharField(max_length=100, blank=True)
    wait_reason = models.CharField(max_length=30, blank=True)
    # When the last "run task X" message was sent; the sweep re-sends stale ones.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)

    submitted_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-submitted_at"]
        indexes = [
            models.Index(fields=["owner", "-submitted_at"], name="task_owner_recent"),
            # The claim query: the best PENDING job of a queue.
            models.Index(fields=["queue_name", "state", "-priority", "submitted_at"], name="task_claim_order"),
            models.Index(fields=["state", "lease_expires_at"], name="task_state_lease"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(priority__lte=10), name="task_priority_0_10"),
            models.CheckConstraint(condition=models.Q(progress__gte=0, progress__lte=1), name="task_progress_0_1"),
        ]

    def __str__(self) -> str:
        return f"{self.task_type} {self.id} [{self.state}]"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES


WAITING_FOR_SERVER = "waiting_for_server"


class TaskEvent(models.Model):
    """Append-only log of what happened to a job: one row per state change (and
    throttled progress). Streams, webhooks, attempt history and stats read it."""

    class Type(models.TextChoices):
        SUBMITTED = "submitted"
        CLAIMED = "claimed"
        STARTED = "started"
        PROGRESS = "progress"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCEL_REQUESTED = "cancel_requested"
        REVOKED = "revoked"
        TIMED_OUT = "timed_out"
        REQUEUED = "requeued"
        RETRIED = "retried"
        ROUTED = "routed"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=20, choices=Type.choices)
    state = models.CharField(max_length=10, choices=TaskState.choices)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["task", "id"], name="taskevent_task_order")]

    def __str__(self) -> str:
        return f"{self.type} {self.task_id}"
