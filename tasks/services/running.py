"""What workers do: claim (alone or with batch companions), start, renew the lease,
report progress, and finish: succeed, fail (retrying when it may), time out, revoke."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from tasks import policy
from tasks.events import EventAudience
from tasks.models import (
    ACTIVE_STATES,
    Task,
    TaskState,
)
from tasks.services.core import EventType, claim_holder, lease_deadline, record_event, retry_later, transition


def task_claim(*, task_id: UUID | str, worker: str, queue_name: str | None = None) -> bool:
    """Claim a PENDING job (only while it is still routed to `queue_name`, if given)."""
    now = timezone.now()
    return transition(
        task_id=task_id,
        to=TaskState.RECEIVED,
        event=EventType.CLAIMED,
        match=Q(queue_name=queue_name) if queue_name is not None else None,
        data={"worker": worker},
        worker=worker,
        attempts=F("attempts") + 1,
        claimed_at=now,
        lease_expires_at=lease_deadline(),
        cancel_requested=False,
    )


def task_claim_next(*, queue_name: str, worker: str, candidates: int = 8, now: datetime | None = None) -> Task | None:
    """Claim the best waiting job of a queue: highest priority, then oldest.

    Deciding here rather than by message order gives priorities on every broker. The
    candidates are tried in turn because other workers claim from the same list.
    """
    waiting = _claimable(queue_name=queue_name, now=now or timezone.now())
    for task_id in list(waiting.values_list("pk", flat=True)[:candidates]):
        if task_claim(task_id=task_id, worker=worker):
            return Task.objects.get(pk=task_id)
    return None


def task_claim_companions(*, leader: Task, worker: str, limit: int, now: datetime | None = None) -> list[Task]:
    """Claim up to `limit` more waiting jobs of the leader's queue that can share its
    pipeline call (the same batch key), best first. They run with the leader, so they
    may pass jobs ahead of them in the queue: they take no time of their own."""
    if limit < 1 or not leader.batch_key:
        return []
    waiting = _claimable(queue_name=leader.queue_name, now=now or timezone.now()).filter(batch_key=leader.batch_key)
    claimed = []
    for task_id in list(waiting.exclude(pk=leader.pk).values_list("pk", flat=True)[: limit * 2]):
        if task_claim(task_id=task_id, worker=worker, queue_name=leader.queue_name):
            claimed.append(task_id)
            if len(claimed) == limit:
                break
    return list(Task.objects.filter(pk__in=claimed).order_by("-priority", "submitted_at"))


def _claimable(*, queue_name: str, now: datetime) -> QuerySet[Task]:
    """A queue's waiting jobs, best first. Jobs still in a retry's backoff, or past
    their queue deadline, are not candidates."""
    return (
        Task.objects.filter(queue_name=queue_name, state=TaskState.PENDING)
        .filter(Q(run_after__isnull=True) | Q(run_after__lte=now))
        .filter(Q(queue_deadline__isnull=True) | Q(queue_deadline__gt=now))
        .order_by("-priority", "submitted_at")
    )


def task_start(*, task: Task, batch_size: int = 1) -> bool:
    data: dict[str, Any] = {"worker": task.worker, "attempt": task.attempts}
    if batch_size > 1:
        data["batch_size"] = batch_size
    started_at = timezone.now()
    started = transition(
        task_id=task.pk,
        to=TaskState.STARTED,
        event=EventType.STARTED,
        match=claim_holder(worker=task.worker, attempt=task.attempts) & Q(cancel_requested=False),
        data=data,
        held=task,
        started_at=started_at,
    )
    if started:
        task.state, task.started_at = TaskState.STARTED, started_at
    return started


def task_lease_renew(*, task: Task) -> bool:
    return bool(
        Task.objects.filter(pk=task.pk, state__in=ACTIVE_STATES)
        .filter(claim_holder(worker=task.worker, attempt=task.attempts))
        .update(lease_expires_at=lease_deadline())
    )


def task_progress_report(*, task: Task, progress: float, step: int, total: int) -> bool:
    progress = min(max(progress, 0.0), 1.0)
    with transaction.atomic():
        updated = (
            Task.objects.filter(pk=task.pk, state=TaskState.STARTED)
            .filter(claim_holder(worker=task.worker, attempt=task.attempts))
            .update(progress=progress, updated_at=timezone.now())
        )
        if updated:
            record_event(
                task_id=task.pk,
                event_type=EventType.PROGRESS,
                state=TaskState.STARTED,
                data={"progress": progress, "step": step, "total": total},
                # Fixed at submit, so the worker's copy of the job is good enough.
                audience=EventAudience(task.owner_id, task.webhook, task.webhook_events),
            )
    return bool(updated)


def task_succeed(*, task: Task, result: dict[str, Any], last_step: tuple[int, int] | None = None) -> bool:
    """`last_step` (step, total): the pipeline's final step, logged as the job's last
    progress event in the same transaction, rather than in one of its own just before."""
    with transaction.atomic():
        if last_step is not None:
            step, total = last_step
            record_event(
                task_id=task.pk,
                event_type=EventType.PROGRESS,
                state=TaskState.STARTED,
                data={"progress": 1.0, "step": step, "total": total},
                audience=EventAudience(task.owner_id, task.webhook, task.webhook_events),
            )
        succeeded = transition(
            task_id=task.pk,
            to=TaskState.SUCCESS,
            event=EventType.SUCCEEDED,
            match=claim_holder(worker=task.worker, attempt=task.attempts),
            held=task,
            progress=1.0,
            result=result,
            completed_at=timezone.now(),
            lease_expires_at=None,
        )
        if not succeeded:
            # Not ours any more: nor is its progress.
            transaction.set_rollback(True)
    return succeeded


def task_fail(*, task: Task, code: str, message: str, now: datetime | None = None) -> bool:
    """A failed run: back to PENDING after a backoff when the failure is retryable and
    attempts remain, else FAILURE."""
    if policy.is_retryable(code) and task.attempts < task.max_attempts:
        return retry_later(
            task=task,
            code=code,
            message=message,
            match=claim_holder(worker=task.worker, attempt=task.attempts),
            now=now or timezone.now(),
        )
    return transition(
        task_id=task.pk,
        to=TaskState.FAILURE,
        event=EventType.FAILED,
        match=claim_holder(worker=task.worker, attempt=task.attempts),
        data={"code": code, "message": message, "attempt": task.attempts},
        error_code=code,
        error_message=message,
        completed_at=timezone.now(),
        lease_expires_at=None,
    )


def task_time_out_running(*, task: Task, limit_seconds: float) -> bool:
    """The worker stopped a job that ran past its task type's run time limit."""
    message = f"The task ran longer than its limit of {limit_seconds:g} seconds."
    return transition(
        task_id=task.pk,
        to=TaskState.TIMEOUT,
        event=EventType.TIMED_OUT,
        sources=ACTIVE_STATES,
        match=claim_holder(worker=task.worker, attempt=task.attempts),
        data={"code": "RUN_TIME_LIMIT", "message": message, "attempt": task.attempts},
        error_code="RUN_TIME_LIMIT",
        error_message=message,
        completed_at=timezone.now(),
        lease_expires_at=None,
    )


def task_revoke_running(*, task: Task) -> bool:
    """The worker stopped a job whose cancel was requested."""
    return transition(
        task_id=task.pk,
        to=TaskState.REVOKED,
        event=EventType.REVOKED,
        sources=ACTIVE_STATES,
        match=claim_holder(worker=task.worker, attempt=task.attempts),
        completed_at=timezone.now(),
        lease_expires_at=None,
    )
