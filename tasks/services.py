"""Every write to a job and every state change.

A state change is one conditional UPDATE (`WHERE state IN (...)`, plus the claim's
worker and attempt for changes only the running worker may make) and one TaskEvent row,
in one transaction. Whoever commits second among racing writers (two workers, a cancel,
a sweep) updates no row and gets False back: exactly one wins.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import User
from generation import specs
from servers.routing import route_new_task, route_waiting_on_commit
from tasks import metrics, policy
from tasks.dispatch import dispatch_on_commit
from tasks.errors import InvalidInput, QuotaExceeded, StateConflict
from tasks.events import task_event_committed
from tasks.models import (
    ACTIVE_STATES,
    RETRYABLE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    UNFINISHED_STATES,
    Task,
    TaskEvent,
    TaskState,
    WebhookEvent,
)
from tasks.storage import task_files_delete
from tasks.webhooks import webhook_url_validate

logger = logging.getLogger(__name__)

EventType = TaskEvent.Type


def _config(name: str) -> Any:
    return settings.BACKSERV[name]


def _lease_deadline() -> datetime:
    return timezone.now() + timedelta(seconds=_config("LEASE_SECONDS"))


def _queued_fields(*, queue_timeout_seconds: int, ready_at: datetime) -> dict[str, Any]:
    """The fields of a job that is (again) waiting to start: its queue wait and its
    queue deadline count from when it is ready to run."""
    return {"queued_at": ready_at, "queue_deadline": ready_at + timedelta(seconds=queue_timeout_seconds)}


def _record_event(
    *, task_id: UUID | str, event_type: str, state: TaskState | str, data: dict[str, Any] | None = None
) -> None:
    event = TaskEvent.objects.create(task_id=task_id, type=event_type, state=state, data=data or {})
    # After commit, so whoever is woken finds the change when it reads; robust, so a
    # failed notice or webhook scheduling never undoes or breaks the state change.
    transaction.on_commit(
        partial(task_event_committed, task_id=task_id, event_id=event.pk, event_type=event_type), robust=True
    )


def _transition(
    *,
    task_id: UUID | str,
    to: TaskState,
    event: str,
    sources: Iterable[TaskState] | None = None,
    match: Q | None = None,
    data: dict[str, Any] | None = None,
    **fields: Any,
) -> bool:
    allowed = TRANSITIONS[to]
    from_states = frozenset(sources) if sources is not None else allowed
    if not from_states <= allowed:
        raise ValueError(f"{sorted(from_states - allowed)} -> {to} is not a transition of the state machine")
    with transaction.atomic():
        rows = Task.objects.filter(pk=task_id, state__in=from_states)
        if match is not None:
            rows = rows.filter(match)
        now = timezone.now()
        if rows.update(state=to, updated_at=now, **fields) != 1:
            return False
        _record_event(task_id=task_id, event_type=event, state=to, data=data)
        if to in TERMINAL_STATES:
            # The job's server has a free slot now: a job waiting for one may take it.
            route_waiting_on_commit()
        row = Task.objects.values("task_type", "worker", "attempts", "queued_at", "started_at").get(pk=task_id)
    _record_transition(task_id=task_id, to=to, event=event, data=data or {}, row=row, now=now)
    return True


def _record_transition(
    *, task_id: UUID | str, to: TaskState, event: str, data: dict[str, Any], row: dict[str, Any], now: datetime
) -> None:
    """One structured log line and the job metrics for a state change."""
    fields: dict[str, Any] = {
        "task_id": str(task_id),
        "task_type": row["task_type"],
        "state": str(to),
        "event": event,
        "worker": row["worker"] or data.get("worker", ""),
        "attempt": row["attempts"],
    }
    if to == TaskState.STARTED and row["queued_at"] is not None:
        fields["queue_wait_s"] = round((now - row["queued_at"]).total_seconds(), 3)
        metrics.task_queue_wait.labels(row["task_type"]).observe(fields["queue_wait_s"])
    if to in TERMINAL_STATES:
        if row["started_at"] is not None:
            fields["duration_s"] = round((now - row["started_at"]).total_seconds(), 3)
            metrics.task_duration.labels(row["task_type"]).observe(fields["duration_s"])
        metrics.tasks_completed.labels(row["task_type"], str(to)).inc()
    if "code" in data:
        fields["error_code"] = data["code"]
    logger.info("task %s %s -> %s", task_id, event, to, extra=fields)


# A job going back to PENDING is routed afresh when its message is sent.
_UNROUTED: dict[str, Any] = {"server": None, "queue_name": "", "wait_reason": ""}


def _claim_holder(*, worker: str, attempt: int) -> Q:
    """Only the claim that is still current may change a running job: a worker whose
    lease was reaped and whose job was claimed again must not finish it."""
    return Q(worker=worker, attempts=attempt)


# Submit, cancel, retry, delete: what clients and operators do ----------------------


def task_submit(
    *,
    owner: User,
    task_type: str,
    params: dict[str, Any],
    priority: int = 5,
    user_label: str = "",
    webhook: str = "",
    webhook_events: Iterable[str] = (),
    idempotency_key: str = "",
    request_fingerprint: str = "",
    group: str = "",
    queue_timeout: int | None = None,
    max_attempts: int | None = None,
) -> Task:
    if not 0 <= priority <= 10:
        raise InvalidInput("priority must be between 0 and 10.", fields={"priority": ["Must be between 0 and 10."]})
    clean_params = specs.validate_params(task_type=task_type, params=params, owner=owner)
    if webhook:
        webhook_url_validate(webhook)
    events = sorted(set(webhook_events))
    unknown = [name for name in events if name not in WebhookEvent.values]
    if unknown:
        message = f"Unknown webhook event {unknown[0]!r}; choose from {', '.join(WebhookEvent.values)}."
        raise InvalidInput(message, fields={"webhook_events": [message]})
    if queue_timeout is None:
        queue_timeout = policy.queue_timeout_seconds(task_type)
    if not 1 <= queue_timeout <= policy.QUEUE_TIMEOUT_LIMIT_SECONDS:
        message = f"Must be between 1 and {policy.QUEUE_TIMEOUT_LIMIT_SECONDS} seconds."
        raise InvalidInput(f"queue_timeout: {message}", fields={"queue_timeout": [message]})
    if max_attempts is None:
        max_attempts = _config("MAX_ATTEMPTS")
    if not 1 <= max_attempts <= policy.MAX_ATTEMPTS_LIMIT:
        message = f"Must be between 1 and {policy.MAX_ATTEMPTS_LIMIT}."
        raise InvalidInput(f"max_attempts: {message}", fields={"max_attempts": [message]})
    now = timezone.now()
    with transaction.atomic():
        _check_unfinished_quota(owner=owner)
        route = route_new_task(task_type=task_type, group=group)
        task = Task.objects.create(
            owner=owner,
            user_label=user_label,
            task_type=task_type,
            params=clean_params,
            priority=priority,
            group=group,
            **route.task_fields(),
            dispatched_at=now if route.queue_name else None,
            webhook=webhook,
            webhook_events=events,
            idempotency_key=idempotency_key,
            request_fingerprint=request_fingerprint,
            max_attempts=max_attempts,
            queue_timeout_seconds=queue_timeout,
            **_queued_fields(queue_timeout_seconds=queue_timeout, ready_at=now),
        )
        _record_event(task_id=task.pk, event_type=EventType.SUBMITTED, state=TaskState.PENDING, data=route.event_data())
        if route.destination is not None:
            dispatch_on_commit(task_id=task.pk, destination=route.destination)
        transaction.on_commit(lambda: metrics.tasks_submitted.labels(task_type).inc())
    logger.info(
        "task %s submitted",
        task.pk,
        extra={"task_id": str(task.pk), "task_type": task_type, "state": "PENDING", "owner": owner.pk},
    )
    return task


def _check_unfinished_quota(*, owner: User) -> None:
    """Inside the submit's transaction. Locking the owner's row makes a user's submits
    count and insert one after another, so racing submits never pass the limit
    (SQLite's IMMEDIATE transactions serialize every writer anyway)."""
    limit = User.objects.select_for_update().values_list("max_unfinished_tasks", flat=True).get(pk=owner.pk)
    if limit is None:
        limit = _config("MAX_UNFINISHED_TASKS")
    if not limit:
        return
    unfinished = Task.objects.filter(owner=owner, state__in=UNFINISHED_STATES).count()
    if unfinished >= limit:
        raise QuotaExceeded(
            f"You have {unfinished} unfinished jobs, the most allowed at once ({limit}); "
            "wait for some to finish or cancel them."
        )


def task_cancel(*, task: Task) -> Task:
    """Queued: revoked now. Running: flagged; the worker stops within one step and
    records REVOKED. Finished: a conflict."""
    # The job can move between the attempts (claimed, or requeued by a sweep): each
    # attempt is conditional, so try again with what it has become.
    for _ in range(3):
        if _transition(
            task_id=task.pk,
            to=TaskState.REVOKED,
            event=EventType.REVOKED,
            sources=[TaskState.PENDING],
            completed_at=timezone.now(),
        ):
            break
        with transaction.atomic():
            flagged = Task.objects.filter(pk=task.pk, state__in=ACTIVE_STATES, cancel_requested=False).update(
                cancel_requested=True, updated_at=timezone.now()
            )
            if flagged:
                state = Task.objects.values_list("state", flat=True).get(pk=task.pk)
                _record_event(task_id=task.pk, event_type=EventType.CANCEL_REQUESTED, state=state)
                break
        current = Task.objects.get(pk=task.pk)
        if current.state in ACTIVE_STATES and current.cancel_requested:
            break
        if current.state not in UNFINISHED_STATES:
            raise StateConflict(f"Task is already {current.state}; only unfinished tasks can be cancelled.")
    else:
        raise StateConflict("Task changed state while being cancelled; try again.", code="state_changed")
    task.refresh_from_db()
    return task


def task_retry(*, task: Task) -> Task:
    now = timezone.now()
    if not _transition(
        task_id=task.pk,
        to=TaskState.PENDING,
        event=EventType.RETRIED,
        sources=RETRYABLE_STATES,
        progress=0.0,
        result=None,
        error_code="",
        error_message="",
        attempts=0,
        worker="",
        lease_expires_at=None,
        cancel_requested=False,
        started_at=None,
        completed_at=None,
        claimed_at=None,
        run_after=None,
        dispatched_at=now,
        **_queued_fields(queue_timeout_seconds=task.queue_timeout_seconds, ready_at=now),
        **_UNROUTED,
    ):
        task.refresh_from_db()
        raise StateConflict(
            f"Task is {task.state}; only FAILURE, TIMEOUT or REVOKED tasks can be retried.",
        )
    dispatch_on_commit(task_id=task.pk)
    task.refresh_from_db()
    return task


def task_requeue(*, task: Task) -> Task:
    """Operators: force a job that seems stuck back to PENDING, now. A RECEIVED or
    STARTED job loses its claim (its worker's later writes are refused and it stops at
    its next step); a PENDING job has its message sent again. Attempts are kept."""
    now = timezone.now()
    requeued = _transition(
        task_id=task.pk,
        to=TaskState.PENDING,
        event=EventType.REQUEUED,
        sources=ACTIVE_STATES,
        data={"reason": "requeued by an operator", "worker": task.worker, "attempt": task.attempts},
        worker="",
        lease_expires_at=None,
        progress=0.0,
        started_at=None,
        run_after=None,
        dispatched_at=now,
        **_queued_fields(queue_timeout_seconds=task.queue_timeout_seconds, ready_at=now),
        **_UNROUTED,
    )
    if requeued:
        dispatch_on_commit(task_id=task.pk)
    else:
        current = Task.objects.get(pk=task.pk)
        if current.state != TaskState.PENDING:
            raise StateConflict(f"Task is {current.state}; only unfinished tasks can be requeued (retry it instead).")
        task_redispatch(task_id=task.pk)
    task.refresh_from_db()
    return task


def task_delete(*, task: Task) -> None:
    with transaction.atomic():
        deleted, _ = Task.objects.filter(pk=task.pk).exclude(state__in=ACTIVE_STATES).delete()
        if not deleted:
            raise StateConflict("Task is running; cancel it first or wait for it to finish.")
        transaction.on_commit(lambda: task_files_delete(task_id=task.pk))
    logger.info("task %s deleted", task.pk)


# Claim, run, finish: what workers do ------------------------------------------------


def task_claim(*, task_id: UUID | str, worker: str, queue_name: str | None = None) -> bool:
    """Claim a PENDING job (only while it is still routed to `queue_name`, if given)."""
    now = timezone.now()
    return _transition(
        task_id=task_id,
        to=TaskState.RECEIVED,
        event=EventType.CLAIMED,
        match=Q(queue_name=queue_name) if queue_name is not None else None,
        data={"worker": worker},
        worker=worker,
        attempts=F("attempts") + 1,
        claimed_at=now,
        lease_expires_at=_lease_deadline(),
        cancel_requested=False,
    )


def task_claim_next(*, queue_name: str, worker: str, candidates: int = 8, now: datetime | None = None) -> Task | None:
    """Claim the best waiting job of a queue: highest priority, then oldest.

    Deciding here rather than by message order gives priorities on every broker. The
    candidates are tried in turn because other workers claim from the same list. Jobs
    still in a retry's backoff, or past their queue deadline, are not candidates.
    """
    now = now or timezone.now()
    waiting = (
        Task.objects.filter(queue_name=queue_name, state=TaskState.PENDING)
        .filter(Q(run_after__isnull=True) | Q(run_after__lte=now))
        .filter(Q(queue_deadline__isnull=True) | Q(queue_deadline__gt=now))
        .order_by("-priority", "submitted_at")
        .values_list("pk", flat=True)[:candidates]
    )
    for task_id in list(waiting):
        if task_claim(task_id=task_id, worker=worker):
            return Task.objects.get(pk=task_id)
    return None


def task_start(*, task: Task) -> bool:
    return _transition(
        task_id=task.pk,
        to=TaskState.STARTED,
        event=EventType.STARTED,
        match=_claim_holder(worker=task.worker, attempt=task.attempts) & Q(cancel_requested=False),
        data={"worker": task.worker, "attempt": task.attempts},
        started_at=timezone.now(),
    )


def task_lease_renew(*, task: Task) -> bool:
    return bool(
        Task.objects.filter(pk=task.pk, state__in=ACTIVE_STATES)
        .filter(_claim_holder(worker=task.worker, attempt=task.attempts))
        .update(lease_expires_at=_lease_deadline())
    )


def task_progress_report(*, task: Task, progress: float, step: int, total: int) -> bool:
    progress = min(max(progress, 0.0), 1.0)
    with transaction.atomic():
        updated = (
            Task.objects.filter(pk=task.pk, state=TaskState.STARTED)
            .filter(_claim_holder(worker=task.worker, attempt=task.attempts))
            .update(progress=progress, updated_at=timezone.now())
        )
        if updated:
            _record_event(
                task_id=task.pk,
                event_type=EventType.PROGRESS,
                state=TaskState.STARTED,
                data={"progress": progress, "step": step, "total": total},
            )
    return bool(updated)


def task_succeed(*, task: Task, result: dict[str, Any]) -> bool:
    return _transition(
        task_id=task.pk,
        to=TaskState.SUCCESS,
        event=EventType.SUCCEEDED,
        match=_claim_holder(worker=task.worker, attempt=task.attempts),
        progress=1.0,
        result=result,
        completed_at=timezone.now(),
        lease_expires_at=None,
    )


def task_fail(*, task: Task, code: str, message: str, now: datetime | None = None) -> bool:
    """A failed run: back to PENDING after a backoff when the failure is retryable and
    attempts remain, else FAILURE."""
    if policy.is_retryable(code) and task.attempts < task.max_attempts:
        return _retry_later(
            task=task,
            code=code,
            message=message,
            match=_claim_holder(worker=task.worker, attempt=task.attempts),
            now=now or timezone.now(),
        )
    return _transition(
        task_id=task.pk,
        to=TaskState.FAILURE,
        event=EventType.FAILED,
        match=_claim_holder(worker=task.worker, attempt=task.attempts),
        data={"code": code, "message": message, "attempt": task.attempts},
        error_code=code,
        error_message=message,
        completed_at=timezone.now(),
        lease_expires_at=None,
    )


def task_time_out_running(*, task: Task, limit_seconds: float) -> bool:
    """The worker stopped a job that ran past its task type's run time limit."""
    message = f"The task ran longer than its limit of {limit_seconds:g} seconds."
    return _transition(
        task_id=task.pk,
        to=TaskState.TIMEOUT,
        event=EventType.TIMED_OUT,
        sources=ACTIVE_STATES,
        match=_claim_holder(worker=task.worker, attempt=task.attempts),
        data={"code": "RUN_TIME_LIMIT", "message": message, "attempt": task.attempts},
        error_code="RUN_TIME_LIMIT",
        error_message=message,
        completed_at=timezone.now(),
        lease_expires_at=None,
    )


def _retry_later(
    *,
    task: Task,
    code: str,
    message: str,
    match: Q,
    now: datetime,
    event: str = EventType.RETRY_SCHEDULED,
    reason: str = "",
    backoff: bool = True,
) -> bool:
    """Back to PENDING, not claimable before the backoff ends; the message is sent
    delayed by the same backoff (the redispatch sweep covers a lost one)."""
    delay = policy.retry_delay_seconds(task.attempts) if backoff else 0.0
    run_after = now + timedelta(seconds=delay)
    data = {"code": code, "message": message, "attempt": task.attempts, "worker": task.worker}
    if reason:
        data["reason"] = reason
    done = _transition(
        task_id=task.pk,
        to=TaskState.PENDING,
        event=event,
        sources=ACTIVE_STATES,
        match=match,
        data={**data, "retry_in": round(delay, 3)},
        error_code="",
        error_message="",
        progress=0.0,
        started_at=None,
        worker="",
        lease_expires_at=None,
        run_after=run_after if backoff else None,
        dispatched_at=run_after,
        **_queued_fields(queue_timeout_seconds=task.queue_timeout_seconds, ready_at=run_after),
        **_UNROUTED,
    )
    if done:
        dispatch_on_commit(task_id=task.pk, delay_seconds=delay)
        if backoff:
            metrics.tasks_retried.labels(task.task_type).inc()
    return done


def task_revoke_running(*, task: Task) -> bool:
    """The worker stopped a job whose cancel was requested."""
    return _transition(
        task_id=task.pk,
        to=TaskState.REVOKED,
        event=EventType.REVOKED,
        sources=ACTIVE_STATES,
        match=_claim_holder(worker=task.worker, attempt=task.attempts),
        completed_at=timezone.now(),
        lease_expires_at=None,
    )


# Sweeps: safe to run in any number of processes at once ---------------------------


def _requeue_or_fail(
    *, task: Task, reason: str, match: Q, now: datetime | None = None, backoff: bool = True
) -> str | None:
    """Put a job whose worker is gone back in the queue (after a backoff unless told
    otherwise), or end it when its attempts are spent or its cancel was requested.
    Returns the new state, or None if the job had moved on (another sweep or the worker
    got there first)."""
    now = now or timezone.now()
    cleared = {"worker": "", "lease_expires_at": None}
    if task.cancel_requested:
        done = _transition(
            task_id=task.pk,
            to=TaskState.REVOKED,
            event=EventType.REVOKED,
            sources=ACTIVE_STATES,
            match=match,
            data={"reason": reason},
            completed_at=now,
            **cleared,
        )
        return TaskState.REVOKED if done else None
    if task.attempts >= task.max_attempts:
        message = f"The worker running this task was lost ({reason}) on each of {task.attempts} attempts."
        done = _transition(
            task_id=task.pk,
            to=TaskState.FAILURE,
            event=EventType.FAILED,
            sources=ACTIVE_STATES,
            match=match,
            data={"code": "WORKER_LOST", "message": message, "attempt": task.attempts},
            error_code="WORKER_LOST",
            error_message=message,
            completed_at=now,
            **cleared,
        )
        return TaskState.FAILURE if done else None
    done = _retry_later(
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


_SWEPT_FIELDS = ("pk", "task_type", "worker", "attempts", "max_attempts", "queue_timeout_seconds", "cancel_requested")


def task_release(*, task: Task, reason: str) -> str | None:
    """Give back a claimed job whose server is gone or refused it: PENDING again and
    routed elsewhere at once (or ended when its attempts are spent)."""
    match = _claim_holder(worker=task.worker, attempt=task.attempts)
    # No backoff: the job did not fail, its server went; another server can take it now.
    return _requeue_or_fail(task=task, reason=reason, match=match, backoff=False)


def tasks_requeue_expired(*, now: datetime | None = None) -> int:
    """Jobs whose worker stopped renewing its lease go back to PENDING (or end)."""
    now = now or timezone.now()
    expired = Task.objects.filter(state__in=ACTIVE_STATES, lease_expires_at__lt=now)
    moved = 0
    for task in expired.only(*_SWEPT_FIELDS):
        # The lease is checked again in the UPDATE: a worker may renew it meanwhile.
        match = Q(lease_expires_at__lt=now) & _claim_holder(worker=task.worker, attempt=task.attempts)
        if _requeue_or_fail(task=task, reason="lease expired", match=match, now=now):
            moved += 1
    return moved


def tasks_time_out_queued(*, now: datetime | None = None) -> int:
    """PENDING jobs past their queue deadline become TIMEOUT."""
    now = now or timezone.now()
    timed_out = 0
    for task_id, waited in Task.objects.filter(state=TaskState.PENDING, queue_deadline__lt=now).values_list(
        "pk", "queue_timeout_seconds"
    ):
        message = f"The task waited more than its queue timeout of {waited} seconds without starting."
        # The deadline is checked again in the UPDATE: a retry or requeue moves it.
        if _transition(
            task_id=task_id,
            to=TaskState.TIMEOUT,
            event=EventType.TIMED_OUT,
            sources=[TaskState.PENDING],
            match=Q(queue_deadline__lt=now),
            data={"code": "QUEUE_TIMEOUT", "message": message},
            error_code="QUEUE_TIMEOUT",
            error_message=message,
            completed_at=now,
        ):
            timed_out += 1
    return timed_out


def tasks_redispatch_stale(*, now: datetime | None = None) -> int:
    """Send "run task X" again for PENDING jobs whose message seems lost.

    Only for queues where nothing was claimed lately: while workers keep claiming, a
    waiting job is only waiting its turn, and re-sending would pile up messages.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=_config("REDISPATCH_AFTER_SECONDS"))
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
        match = _claim_holder(worker=task.worker, attempt=task.attempts)
        if _requeue_or_fail(task=task, reason="server restarted", match=match):
            moved += 1
    for task_id in waiting:
        task_redispatch(task_id=task_id)
    return moved


def task_redispatch(*, task_id: UUID | str) -> None:
    """Send a PENDING job's message again (its message was spent on a better job)."""
    if Task.objects.filter(pk=task_id, state=TaskState.PENDING).update(dispatched_at=timezone.now()):
        dispatch_on_commit(task_id=task_id)
