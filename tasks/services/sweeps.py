"""Sweeps: jobs whose worker is gone, jobs past their queue deadline, messages lost.
Each change is conditional, so any number of processes may sweep at once."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from tasks.dispatch import dispatch_on_commit
from tasks.models import (
    ACTIVE_STATES,
    Task,
    TaskState,
)
from tasks.services.core import Change, EventType, config, current_claim, retry_later, task_redispatch
from tasks.usage import held_usage, usage_fields


def _requeue_or_fail(
    *, task: Task, reason: str, match: Q, now: datetime | None = None, backoff: bool = True
) -> str | None:
    """Put a job whose worker is gone back in the queue (after a backoff unless told
    otherwise), or end it when its attempts are spent or its cancel was requested.
    Returns the new state, or None if the job had moved on (another sweep or the worker
    got there first)."""
    now = now or timezone.now()
    # A run lost with its worker is not charged: how long it computed is unknown, and
    # nothing it computed was delivered.
    usage = {**held_usage(task, completed_at=now), "gpu_seconds": 0.0}
    end_fields = {"worker": "", "lease_expires_at": None, "completed_at": now, **usage}
    if task.cancel_requested:
        ended = Change(
            to=TaskState.REVOKED,
            event=EventType.REVOKED,
            sources=ACTIVE_STATES,
            match=match,
            data={"reason": reason},
            fields=end_fields,
        ).run([task.pk])
        return TaskState.REVOKED if ended else None
    if task.attempts >= task.max_attempts:
        message = f"The worker running this task was lost ({reason}) on each of {task.attempts} attempts."
        ended = Change(
            to=TaskState.FAILURE,
            event=EventType.FAILED,
            sources=ACTIVE_STATES,
            match=match,
            data={"code": "WORKER_LOST", "message": message, "attempt": task.attempts},
            fields={"error_code": "WORKER_LOST", "error_message": message, **end_fields},
        ).run([task.pk])
        return TaskState.FAILURE if ended else None
    done = retry_later(
        task=task,
        code="WORKER_LOST",
        message=f"The worker running this task was lost ({reason}).",
        match=match,
        now=now,
        event=EventType.REQUEUED,
        reason=reason,
        backoff=backoff,
    )
    return TaskState.PENDING if done else None


_SWEPT_FIELDS = (
    "pk",
    "task_type",
    "worker",
    "attempts",
    "max_attempts",
    "queue_timeout_seconds",
    "cancel_requested",
    "queued_at",
    "started_at",
)


def task_release(*, task: Task, reason: str) -> str | None:
    """Give back a claimed job whose server is gone: PENDING again and routed
    elsewhere at once (or ended when its attempts are spent). The attempt is spent:
    the job may have run there (a job that never reached its server is handed back
    unspent with task_hand_back)."""
    # No backoff: the job did not fail, its server went; another server can take it now.
    return _requeue_or_fail(task=task, reason=reason, match=current_claim(task), backoff=False)


def tasks_requeue_expired(*, now: datetime | None = None) -> int:
    """Jobs whose worker stopped renewing its lease go back to PENDING (or end)."""
    now = now or timezone.now()
    expired = Task.objects.filter(state__in=ACTIVE_STATES, lease_expires_at__lt=now)
    moved = 0
    for task in expired.only(*_SWEPT_FIELDS):
        # The lease is checked again in the UPDATE: a worker may renew it meanwhile.
        match = Q(lease_expires_at__lt=now) & current_claim(task)
        if _requeue_or_fail(task=task, reason="lease expired", match=match, now=now):
            moved += 1
    return moved


def tasks_time_out_queued(*, now: datetime | None = None) -> int:
    """PENDING jobs past their queue deadline become TIMEOUT."""
    now = now or timezone.now()
    timed_out = 0
    for task_id, waited, queued_at in Task.objects.filter(state=TaskState.PENDING, queue_deadline__lt=now).values_list(
        "pk", "queue_timeout_seconds", "queued_at"
    ):
        message = f"The task waited more than its queue timeout of {waited} seconds without starting."
        # The deadline is checked again in the UPDATE: a retry or requeue moves it.
        if Change(
            to=TaskState.TIMEOUT,
            event=EventType.TIMED_OUT,
            sources=[TaskState.PENDING],
            match=Q(queue_deadline__lt=now),
            data={"code": "QUEUE_TIMEOUT", "message": message},
            fields={
                "error_code": "QUEUE_TIMEOUT",
                "error_message": message,
                "completed_at": now,
                **usage_fields(queued_at=queued_at, started_at=None, completed_at=now),
            },
        ).run([task_id]):
            timed_out += 1
    return timed_out


def tasks_redispatch_stale(*, now: datetime | None = None) -> int:
    """Send "run task X" again for PENDING jobs whose message seems lost.

    Only for queues where nothing was claimed lately: while workers keep claiming, a
    waiting job is only waiting its turn, and re-sending would pile up messages.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=config("REDISPATCH_AFTER_SECONDS"))
    stale = (
        Task.objects.filter(state=TaskState.PENDING)
        .filter(Q(dispatched_at__lt=cutoff) | Q(dispatched_at=None))
        # Jobs waiting for a server have no message to lose; routing them sends one.
        .exclude(queue_name="")
    )
    sent = 0
    for queue_name in stale.values_list("queue_name", flat=True).distinct():
        if Task.objects.filter(queue_name=queue_name, claimed_at__gte=cutoff).exists():
            continue
        for task_id, dispatched_at in stale.filter(queue_name=queue_name).values_list("pk", "dispatched_at"):
            # Compare-and-set on dispatched_at: concurrent sweeps send each message once.
            if Task.objects.filter(pk=task_id, state=TaskState.PENDING, dispatched_at=dispatched_at).update(
                dispatched_at=now
            ):
                dispatch_on_commit(task_id=task_id)
                sent += 1
    return sent


def tasks_recover_after_restart() -> int:
    """Embedded mode, at start: this process is the only worker, so every job left
    claimed belongs to the run that died. Requeue them and re-send every PENDING job's
    message (the in-process broker lost them with the process)."""
    waiting = list(Task.objects.filter(state=TaskState.PENDING).values_list("pk", flat=True))
    moved = 0
    for task in Task.objects.filter(state__in=ACTIVE_STATES).only(*_SWEPT_FIELDS):
        if _requeue_or_fail(task=task, reason="server restarted", match=current_claim(task)):
            moved += 1
    for task_id in waiting:
        task_redispatch(task_id=task_id)
    return moved
