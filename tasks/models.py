from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


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

# The partial indexes' conditions, in a fixed order (migrations compare them as written).
_UNFINISHED = sorted(UNFINISHED_STATES)
_ACTIVE = sorted(ACTIVE_STATES)
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
    # Not indexed alone: task_owner_recent, led by the owner, serves its lookups.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tasks", db_index=False)
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
    # Claims allowed before a retryable failure becomes final (first run included).
    max_attempts = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1)])
    # A job not started this many seconds after it was (re)queued becomes TIMEOUT.
    queue_timeout_seconds = models.PositiveIntegerField(default=600)
    # When the job last became ready to run (submit, retry, requeue, or the end of a
    # retry's backoff) and so when its queue wait started.
    queued_at = models.DateTimeField(null=True, blank=True)
    queue_deadline = models.DateTimeField(null=True, blank=True)
    # Not before: an automatic retry waits out its backoff; the claim skips it until then.
    run_after = models.DateTimeField(null=True, blank=True)
    # Jobs with the same non-empty key can run as one pipeline call (generation.specs).
    batch_key = models.CharField(max_length=200, blank=True, default="", db_default="")

    # The Dramatiq queue its messages go to; "" while it waits for a server to be routed to.
    queue_name = models.CharField(max_length=100, blank=True)
    # Routing: the server it was sent to, the server group the client asked for, and why
    # it is not routed yet (WAITING_FOR_SERVER) if it is not.
    # Not indexed alone: task_server_completed, led by the server, serves its lookups.
    server = models.ForeignKey(
        "servers.Server", null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks", db_index=False
    )
    group = models.CharField(max_length=100, blank=True)
    # Jobs of a type Back.Serv does not run itself (the distributed-system document's
    # "video-processing"): what a remote server must declare to be sent it. Empty for
    # Back.Serv's task types, whose servers declare the type itself.
    capabilities = models.JSONField(default=list, blank=True)
    wait_reason = models.CharField(max_length=30, blank=True)
    # When the last "run task X" message was sent; the sweep re-sends stale ones.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)

    # Where to POST the job on its events, and which events besides "completed".
    webhook = models.URLField(max_length=2000, blank=True)
    webhook_events = models.JSONField(default=list, blank=True)
    # A client's retry of the same submit returns this job instead of a new one; the
    # fingerprint tells a true retry (same body) from a reused key (409).
    idempotency_key = models.CharField(max_length=255, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True)

    submitted_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Usage, set as the job ends (tasks.usage): seconds it waited to start since it was
    # last queued, and its share of the GPU time of the run that ended it.
    queue_seconds = models.FloatField(null=True, blank=True)
    gpu_seconds = models.FloatField(null=True, blank=True)
    # When the sweep deleted its output files, RESULT_RETENTION_DAYS after it ended.
    result_expired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-submitted_at"]
        # Each index names the query it serves (tasks/migrations/0011_partial_indexes).
        # Those over unfinished jobs are partial: most rows are finished jobs, which
        # they then neither hold nor are updated for.
        indexes = [
            models.Index(fields=["owner", "-submitted_at"], name="task_owner_recent"),
            # A submit's quota: the owner's unfinished jobs.
            models.Index(fields=["owner"], condition=Q(state__in=_UNFINISHED), name="task_owner_unfinished"),
            # The claim (the best PENDING jobs of a queue) and queue positions.
            models.Index(
                fields=["queue_name", "-priority", "submitted_at"],
                condition=Q(state=TaskState.PENDING),
                name="task_pending_claim_order",
            ),
            # The sweeps: expired leases (also a queue's lanes: its running jobs), queue
            # deadlines; the dashboard's oldest waiting job.
            models.Index(fields=["lease_expires_at"], condition=Q(state__in=_ACTIVE), name="task_active_lease"),
            models.Index(fields=["queue_deadline"], condition=Q(state=TaskState.PENDING), name="task_pending_deadline"),
            models.Index(fields=["queued_at"], condition=Q(state=TaskState.PENDING), name="task_pending_queued"),
            # Stats read a day of jobs by when they were created and when they ended.
            models.Index(fields=["submitted_at"], name="task_submitted"),
            models.Index(fields=["completed_at"], name="task_completed"),
            models.Index(fields=["server", "completed_at"], name="task_server_completed"),
            # Routing counts each server's unfinished jobs under the balancer's lock.
            models.Index(fields=["server"], condition=Q(state__in=_UNFINISHED), name="task_server_unfinished"),
            models.Index(fields=["owner", "completed_at"], name="task_owner_completed"),
            # Result retention: the successful jobs whose files are still kept, oldest first.
            models.Index(
                fields=["completed_at"],
                condition=models.Q(state=TaskState.SUCCESS, result_expired_at__isnull=True),
                name="task_results_kept",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(priority__lte=10), name="task_priority_0_10"),
            models.CheckConstraint(condition=models.Q(progress__gte=0, progress__lte=1), name="task_progress_0_1"),
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="task_owner_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_type} {self.id} [{self.state}]"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES


WAITING_FOR_SERVER = "waiting_for_server"


class UnfinishedCount(models.Model):
    """How many unfinished jobs a user has, on Postgres: kept by triggers on the jobs'
    table (tasks/migrations/0013_unfinished_count), which count every insert, change of
    state and delete, whoever makes it. A submit checks its owner's quota against this
    row, locked, instead of counting the owner's jobs (tasks.services.submit_statement).
    SQLite has no triggers here and counts the jobs: its writers take turns anyway."""

    owner = models.OneToOneField(settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="+")
    unfinished = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.unfinished} unfinished jobs of user {self.owner_id}"


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
        RETRY_SCHEDULED = "retry_scheduled"
        # A claim given back unspent: its job never reached the one who was to run it.
        HANDED_BACK = "handed_back"

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


class WebhookEvent(models.TextChoices):
    START = "start"
    PROGRESS = "progress"
    COMPLETED = "completed"


class WebhookSecret(models.Model):
    """The key an owner's webhooks are signed with. Kept in the clear: signing needs
    it, and the owner reads it back to verify (it is not a login credential)."""

    owner = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_secret")
    secret = models.CharField(max_length=100)
    rotated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"webhook secret of {self.owner}"


class WebhookDelivery(models.Model):
    """One event of one job to send to its webhook, retried until it lands or gives up.
    Its id is the `webhook-id` header, the same on every attempt, so receivers can
    drop duplicates."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="webhook_deliveries")
    event = models.CharField(max_length=20, choices=WebhookEvent.choices)
    url = models.URLField(max_length=2000)
    # The exact bytes signed and sent: the job as the API showed it at the event.
    body = models.TextField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # The retry schedule runs from here; a redeliver starts it again.
    scheduled_since = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="webhook_due")]

    def __str__(self) -> str:
        return f"{self.event} of {self.task_id} [{self.state}]"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField()
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}: {self.status_code or self.error}"


class UsageDay(models.Model):
    """One user's jobs of one task type that ended on one closed day (UTC), summed by
    the sweep once the day is over (tasks.usage_rollup). Usage reads take the days up to
    the last one rolled up from here: a month of a busy user's jobs is a hundred rows,
    not a million, and it outlives TASK_RETENTION_DAYS deleting the jobs."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    task_type = models.CharField(max_length=50)
    jobs = models.PositiveIntegerField()
    succeeded = models.PositiveIntegerField()
    failed = models.PositiveIntegerField()
    gpu_seconds = models.FloatField()

    class Meta:
        constraints = [
            # Also the index of one user's days.
            models.UniqueConstraint(fields=["owner", "day", "task_type"], name="usage_day_owner_day_type"),
        ]
        # The admin's usage page: every user's days of a range.
        indexes = [models.Index(fields=["day"], name="usage_day_day")]

    def __str__(self) -> str:
        return f"{self.owner_id} {self.day} {self.task_type}"


class UsageRolledDay(models.Model):
    """A day UsageDay holds: rolled up once (its key refuses a second sweep doing it
    again). Every day up to the latest is rolled up, those without jobs included."""

    day = models.DateField(primary_key=True)
    rolled_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return str(self.day)
