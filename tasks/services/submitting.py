"""What clients and operators do to jobs: submit, cancel, retry, requeue, delete."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any

from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from backserv_site.errors import InvalidInput, QuotaExceeded, StateConflict
from tasks import dispatch, metrics, policy, task_types
from tasks.dispatch import dispatch_on_commit
from tasks.events import EventAudience, task_events_committed
from tasks.models import (
    ACTIVE_STATES,
    RETRYABLE_STATES,
    UNFINISHED_STATES,
    Task,
    TaskState,
    WebhookEvent,
)
from tasks.selectors import SubmitFigures, submit_figures
from tasks.services import submit_statement
from tasks.services.core import UNROUTED, Change, EventType, config, queued_fields, record_event, task_redispatch
from tasks.storage import task_files_delete
from tasks.usage import usage_fields
from tasks.webhooks import webhook_url_validate

logger = logging.getLogger(__name__)


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
    capabilities: Iterable[str] = (),
) -> Task:
    """Queue a job. A job of a Back.Serv task type has its params checked here; one of
    another type needs `capabilities`, which a registered remote server must declare:
    it runs only there, its params passed on as they are."""
    if not 0 <= priority <= 10:
        raise InvalidInput("priority must be between 0 and 10.", fields={"priority": ["Must be between 0 and 10."]})
    required = sorted(set(capabilities))
    if required:
        clean_params = _remote_only_params(task_type=task_type, params=params, capabilities=required)
    else:
        clean_params = task_types.validate_params(task_type=task_type, params=params, owner=owner)
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
        max_attempts = config("MAX_ATTEMPTS")
    if not 1 <= max_attempts <= policy.MAX_ATTEMPTS_LIMIT:
        message = f"Must be between 1 and {policy.MAX_ATTEMPTS_LIMIT}."
        raise InvalidInput(f"max_attempts: {message}", fields={"max_attempts": [message]})
    now = timezone.now()
    fields = {
        "owner": owner,
        "user_label": user_label,
        "task_type": task_type,
        "params": clean_params,
        # A remote server runs a job of another type as it sees fit: never batched here.
        "batch_key": "" if required else task_types.batch_key(task_type, clean_params),
        "priority": priority,
        "group": group,
        "capabilities": required,
        "webhook": webhook,
        "webhook_events": events,
        "idempotency_key": idempotency_key,
        "request_fingerprint": request_fingerprint,
        "max_attempts": max_attempts,
        "queue_timeout_seconds": queue_timeout,
        **queued_fields(queue_timeout_seconds=queue_timeout, ready_at=now),
    }
    made = _submit_in_one_statement(fields, now=now) if submit_statement.applies() else None
    if made is None:
        made = _submit_in_transaction(fields, now=now)
    task, figures = made
    # What a read shows beyond the row, counted with the quota: the answer needs no
    # read after the commit (tasks.selectors uses these as it uses a read's figures).
    task.queue_ahead, task.queue_lanes, task.ever_claimed = figures.queue_ahead, figures.queue_lanes, False
    logger.info(
        "task %s submitted",
        task.pk,
        extra={"task_id": str(task.pk), "task_type": task_type, "state": "PENDING", "owner": owner.pk},
    )
    return task


def _routed(fields: dict[str, Any], route: dispatch.Route, *, now: datetime) -> dict[str, Any]:
    routed = route.task_fields()
    return {**fields, **routed, "dispatched_at": now if routed["queue_name"] else None}


def _submit_in_one_statement(fields: dict[str, Any], *, now: datetime) -> tuple[Task, SubmitFigures] | None:
    """On Postgres outside a transaction: the job, its event and the quota check in one
    statement (tasks.services.submit_statement). None where that cannot decide: the
    submit then takes the transaction path."""
    owner: User = fields["owner"]
    route = dispatch.routing.plan_new_task(
        task_type=fields["task_type"], group=fields["group"], capabilities=fields["capabilities"]
    )
    if route is None:
        return None
    task = Task(**_routed(fields, route, now=now))
    limit = _unfinished_limit(owner.max_unfinished_tasks)
    outcome = submit_statement.submit_statement(task=task, route=route, quota=limit, event_data=route.event_data())
    if not outcome.route_held:
        route.lost()
        return None
    if not outcome.counted:
        return None
    if not outcome.under_quota:
        raise _quota_exceeded(limit)
    task._state.adding, task._state.db = False, DEFAULT_DB_ALIAS
    # Committed already: the work that follows a commit runs now, in the same order.
    if route.destination is not None:
        dispatch_on_commit(task_id=task.pk, destination=route.destination)
    audience = EventAudience(owner.pk, task.webhook, task.webhook_events)
    # Outside a transaction on_commit runs it at once; robust, as record_events has it.
    transaction.on_commit(partial(task_events_committed, [(task.pk, EventType.SUBMITTED, audience)]), robust=True)
    metrics.tasks_submitted.labels(task.task_type).inc()
    return task, outcome.figures


def _submit_in_transaction(fields: dict[str, Any], *, now: datetime) -> tuple[Task, SubmitFigures]:
    owner: User = fields["owner"]
    with transaction.atomic():
        route = dispatch.routing.route_new_task(
            task_type=fields["task_type"], group=fields["group"], capabilities=fields["capabilities"]
        )
        task = Task.objects.create(**_routed(fields, route, now=now))
        # The message first: after commit it goes out before the change notice.
        if route.destination is not None:
            dispatch_on_commit(task_id=task.pk, destination=route.destination)
        record_event(
            task_id=task.pk,
            event_type=EventType.SUBMITTED,
            state=TaskState.PENDING,
            data=route.event_data(),
            audience=EventAudience(owner.pk, task.webhook, task.webhook_events),
        )
        figures = _check_unfinished_quota(task=task)
        task_type = task.task_type
        transaction.on_commit(lambda: metrics.tasks_submitted.labels(task_type).inc())
    return task, figures


@contextmanager
def tasks_submitted_together() -> Iterator[None]:
    """Submits made inside commit together (a batch request): their messages go out
    once every job is saved, so the first worker to wake finds them all waiting and
    runs them as full batches, not the first job alone. Each submit stays a savepoint
    of its own: a job refused (bad params, the quota) is rolled back alone."""
    with transaction.atomic():
        yield


def _remote_only_params(*, task_type: str, params: Any, capabilities: list[str]) -> dict[str, Any]:
    if task_types.known(task_type):
        message = f"{task_type} runs on Back.Serv's own workers; capabilities are only for other job types."
        raise InvalidInput(f"capabilities: {message}", fields={"capabilities": [message]})
    if not all(isinstance(name, str) and 0 < len(name) <= 50 for name in capabilities):
        message = "Each capability must be a name of at most 50 characters."
        raise InvalidInput(f"capabilities: {message}", fields={"capabilities": [message]})
    if not dispatch.routing.remote_servers_declaring(capabilities):
        declared = sorted(dispatch.routing.remote_capabilities_declared() - set(task_types.names()))
        known = ", ".join(task_types.names())
        others = f"remote servers declare: {', '.join(declared)}" if declared else "no remote server declares any other"
        message = (
            f"No registered server runs {task_type!r} (capabilities {', '.join(capabilities)}). "
            f"Task types: {known}; {others}."
        )
        raise InvalidInput(message, code="unknown_task_type", fields={"task_type": [message]})
    if not isinstance(params, dict):
        raise InvalidInput("params must be a JSON object.", fields={"params": ["Must be a JSON object."]})
    return params


def _unfinished_limit(limit: int | None) -> int:
    """A user's limit on unfinished jobs (0: none), theirs or the default."""
    return config("MAX_UNFINISHED_TASKS") if limit is None else limit


def _quota_exceeded(limit: int) -> QuotaExceeded:
    return QuotaExceeded(
        f"You have {limit} unfinished jobs, the most allowed at once; wait for some to finish or cancel them."
    )


def _check_unfinished_quota(*, task: Task) -> SubmitFigures:
    """The last step of a submit's transaction, after its INSERTs: refuse the job if it
    takes its owner past the limit on unfinished jobs, and count the answer's figures.

    Racing submits never pass the limit. On Postgres the INSERT's trigger has counted
    the job in its owner's UnfinishedCount row, which this transaction now holds locked
    until it ends: the count read here is the latest, and the next submit of the owner
    (in one statement or in a transaction) waits for it. On SQLite, IMMEDIATE
    transactions serialize every writer, and the jobs are counted."""
    owner_id = task.owner_id
    limit = _unfinished_limit(User.objects.values_list("max_unfinished_tasks", flat=True).get(pk=owner_id))
    figures = submit_figures(task=task, quota=limit)
    if figures.over_quota:
        raise _quota_exceeded(limit)
    return figures


def task_cancel(*, task: Task) -> Task:
    """Queued: revoked now. Running: flagged; the worker stops within one step and
    records REVOKED. Finished: a conflict."""
    # The job can move between the attempts (claimed, or requeued by a sweep): each
    # attempt is conditional, so try again with what it has become.
    for _ in range(3):
        now = timezone.now()
        if Change(
            to=TaskState.REVOKED,
            event=EventType.REVOKED,
            sources=[TaskState.PENDING],
            fields={"completed_at": now, **usage_fields(queued_at=task.queued_at, started_at=None, completed_at=now)},
        ).run([task.pk]):
            break
        if Change(
            to=None,
            event=EventType.CANCEL_REQUESTED,
            sources=ACTIVE_STATES,
            match=Q(cancel_requested=False),
            fields={"cancel_requested": True},
        ).run([task.pk]):
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
    if not Change(
        to=TaskState.PENDING,
        event=EventType.RETRIED,
        sources=RETRYABLE_STATES,
        fields={
            "progress": 0.0,
            "result": None,
            "error_code": "",
            "error_message": "",
            "attempts": 0,
            "worker": "",
            "lease_expires_at": None,
            "cancel_requested": False,
            "started_at": None,
            "completed_at": None,
            "queue_seconds": None,
            "gpu_seconds": None,
            "claimed_at": None,
            "run_after": None,
            "dispatched_at": now,
            **queued_fields(queue_timeout_seconds=task.queue_timeout_seconds, ready_at=now),
            **UNROUTED,
        },
    ).run([task.pk]):
        task.refresh_from_db()
        raise StateConflict(
            f"Task is {task.state}; only FAILURE, TIMEOUT or REVOKED tasks can be retried.",
        )
    task.refresh_from_db()
    return task


def task_requeue(*, task: Task) -> Task:
    """Operators: force a job that seems stuck back to PENDING, now. A RECEIVED or
    STARTED job loses its claim (its worker's later writes are refused and it stops at
    its next step); a PENDING job has its message sent again. Attempts are kept."""
    now = timezone.now()
    requeued = Change(
        to=TaskState.PENDING,
        event=EventType.REQUEUED,
        sources=ACTIVE_STATES,
        data={"reason": "requeued by an operator", "worker": task.worker, "attempt": task.attempts},
        fields={
            "worker": "",
            "lease_expires_at": None,
            "progress": 0.0,
            "started_at": None,
            "run_after": None,
            "dispatched_at": now,
            **queued_fields(queue_timeout_seconds=task.queue_timeout_seconds, ready_at=now),
            **UNROUTED,
        },
    ).run([task.pk])
    if not requeued:
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
