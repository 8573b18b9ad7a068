"""The state machine's machinery, shared by every service: a state change is one
conditional UPDATE plus one event row, in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from tasks import metrics, policy
from tasks.dispatch import dispatch_on_commit, route_waiting_on_commit
from tasks.events import EventAudience, task_events_committed
from tasks.models import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    Task,
    TaskEvent,
    TaskState,
)
from tasks.selectors import rows_changed

logger = logging.getLogger(__name__)


EventType = TaskEvent.Type


def config(name: str) -> Any:
    return settings.BACKSERV[name]


def lease_deadline() -> datetime:
    return timezone.now() + timedelta(seconds=config("LEASE_SECONDS"))


def queued_fields(*, queue_timeout_seconds: int, ready_at: datetime) -> dict[str, Any]:
    """The fields of a job that is (again) waiting to start: its queue wait and its
    queue deadline count from when it is ready to run."""
    return {"queued_at": ready_at, "queue_deadline": ready_at + timedelta(seconds=queue_timeout_seconds)}


def record_event(
    *,
    task_id: UUID | str,
    event_type: str,
    state: TaskState | str,
    data: dict[str, Any] | None = None,
    audience: EventAudience | None = None,
) -> None:
    """Append an event; `audience` (the job's owner and webhook) saves a read when the
    caller has it at hand."""
    record_events([(task_id, event_type, state, data or {}, audience)])


# An event to append: (task_id, type, state, data, audience or None).
NewEvent = tuple[UUID | str, str, TaskState | str, dict[str, Any], EventAudience | None]


def record_events(events: list[NewEvent]) -> None:
    """Append events in one INSERT. After commit their notice goes out (and their
    webhook deliveries are scheduled), so whoever is woken finds the change when it
    reads; robust, so a failed notice or webhook scheduling never undoes or breaks the
    state change."""
    TaskEvent.objects.bulk_create(
        [TaskEvent(task_id=task_id, type=kind, state=state, data=data) for task_id, kind, state, data, _ in events]
    )
    committed = [(task_id, kind, audience) for task_id, kind, _, _, audience in events]
    transaction.on_commit(partial(task_events_committed, committed), robust=True)


def transition(
    *,
    task_id: UUID | str,
    to: TaskState,
    event: str,
    sources: Iterable[TaskState] | None = None,
    match: Q | None = None,
    data: dict[str, Any] | None = None,
    held: Task | None = None,
    **fields: Any,
) -> bool:
    """`held`: the running worker's copy of the job, when `match` makes it the claim's
    holder; what the event and log need is then read from it, not from the row again."""
    allowed = TRANSITIONS[to]
    from_states = frozenset(sources) if sources is not None else allowed
    if not from_states <= allowed:
        raise ValueError(f"{sorted(from_states - allowed)} -> {to} is not a transition of the state machine")
    # No savepoint when a caller's transaction is open: a savepoint is two more round
    # trips, and an error here aborts the caller's work anyway.
    with transaction.atomic(savepoint=False):
        rows = Task.objects.filter(pk=task_id, state__in=from_states)
        if match is not None:
            rows = rows.filter(match)
        now = timezone.now()
        if rows.update(state=to, updated_at=now, **fields) != 1:
            return False
        row = _row_after(task_id=task_id, held=held, fields=fields)
        record_event(task_id=task_id, event_type=event, state=to, data=data, audience=EventAudience.of(row))
        if to in TERMINAL_STATES:
            # The job's server has a free slot now: a job waiting for one may take it.
            route_waiting_on_commit()
    _record_transition(task_id=task_id, to=to, event=event, data=data or {}, row=row, now=now)
    return True


# An event to log just before a job's own change, in the same INSERT: (type, state, data).
PriorEvent = tuple[str, TaskState, dict[str, Any]]


def transition_held(
    *,
    tasks: list[Task],
    to: TaskState,
    event: str,
    data_of: Callable[[Task], dict[str, Any]],
    match: Q | None = None,
    fields_of: Callable[[Task], dict[str, Any]] | None = None,
    prior_events_of: Callable[[Task], list[PriorEvent]] | None = None,
    holder_of: Callable[[Task], Q] | None = None,
    **fields: Any,
) -> list[Task]:
    """The same change for several jobs a worker holds (a batch), in one transaction
    with one INSERT of all their events. Each row must still be held by the claim in
    the worker's copy; those that are not (cancelled, reaped meanwhile) are left alone
    and not returned. `holder_of` says what "held" means for a job when it is not
    that claim (a claim of read jobs: still at the attempt count read)."""
    with transaction.atomic(savepoint=False):
        now = timezone.now()
        done = held_changed(
            tasks=tasks, to=to, match=match, fields_of=fields_of, holder_of=holder_of, now=now, **fields
        )
        held_events_recorded(
            [(task, [*(prior_events_of(task) if prior_events_of else []), (event, to, data_of(task))]) for task in done]
        )
    held_transitions_logged(
        [(task, [(event, to, data_of(task))]) for task in done], fields=fields, fields_of=fields_of, now=now
    )
    return done


def held_changed(
    *,
    tasks: list[Task],
    to: TaskState,
    now: datetime,
    via: TaskState | None = None,
    match: Q | None = None,
    fields_of: Callable[[Task], dict[str, Any]] | None = None,
    holder_of: Callable[[Task], Q] | None = None,
    **fields: Any,
) -> list[Task]:
    """The UPDATE of transition_held, without its events (held_events_recorded writes
    them): the jobs it changed. `via`: the change passes through that state in the
    same statement (a claim and its start), so it starts from that state's sources.

    One UPDATE for all, each job's own values (`fields_of`, e.g. its result) set by a
    CASE on its id; the rows it changed are read back only when it changed fewer than
    it was given."""
    if via is not None and via not in TRANSITIONS[to]:
        raise ValueError(f"{via} -> {to} is not a transition of the state machine")
    held_by = holder_of or (lambda task: claim_holder(worker=task.worker, attempt=task.attempts))
    rows = Task.objects.filter(state__in=TRANSITIONS[via if via is not None else to])
    if match is not None:
        rows = rows.filter(match)
    holders = Q()
    for task in tasks:
        holders |= Q(pk=task.pk) & held_by(task)
    own = _own_values(tasks, fields_of) if fields_of is not None else {}
    updated = rows.filter(holders).update(state=to, updated_at=now, **fields, **own)
    if not updated:
        return []
    changed = set(rows_changed([task.pk for task in tasks], updated=updated, state=to, updated_at=now))
    return [task for task in tasks if task.pk in changed]


# Jobs held_changed changed, each with events of its change, in order: (type, state, data).
HeldEvents = list[tuple[Task, list[PriorEvent]]]


def held_events_recorded(changes: HeldEvents) -> None:
    """The events of changes held_changed made, in one INSERT; a change that ends a
    job (its last event's state) frees its server's slot for a waiting job."""
    if not changes:
        return
    record_events(
        [
            (task.pk, kind, state, data, EventAudience(task.owner_id, task.webhook, task.webhook_events))
            for task, events in changes
            for kind, state, data in events
        ]
    )
    if any(events and events[-1][1] in TERMINAL_STATES for _, events in changes):
        route_waiting_on_commit()


def held_transitions_logged(
    changes: HeldEvents,
    *,
    fields: dict[str, Any],
    now: datetime,
    fields_of: Callable[[Task], dict[str, Any]] | None = None,
) -> None:
    """A log line and the metrics of each state change named (a change passing through
    a state names that one too). `fields` (and `fields_of`): what the UPDATE set."""
    for task, transitions in changes:
        row = _row_after(task_id=task.pk, held=task, fields={**fields, **(fields_of(task) if fields_of else {})})
        for kind, state, data in transitions:
            _record_transition(task_id=task.pk, to=state, event=kind, data=data, row=row, now=now)


def _own_values(tasks: list[Task], fields_of: Callable[[Task], dict[str, Any]]) -> dict[str, Any]:
    """Each job's own values for one UPDATE of them all: per field, a CASE on the job's
    id (a job without a value for it keeps its own); a single job's values as they are."""
    values = {task.pk: fields_of(task) for task in tasks}
    if len(values) == 1:
        return next(iter(values.values()))
    names = {name for own in values.values() for name in own}
    cases = {}
    for name in sorted(names):
        field = Task._meta.get_field(name)
        whens = [When(pk=pk, then=Value(own[name], output_field=field)) for pk, own in values.items() if name in own]
        cases[name] = Case(*whens, default=F(name), output_field=field)
    return cases


_ROW_FIELDS = ("task_type", "worker", "attempts", "queued_at", "started_at", *EventAudience._fields)


def _row_after(*, task_id: UUID | str, held: Task | None, fields: dict[str, Any]) -> dict[str, Any]:
    """What an event and its log line need of the job just changed."""
    if held is None:
        return Task.objects.values(*_ROW_FIELDS).get(pk=task_id)
    # The claim's holder matched, so worker and attempts are the holder's; the rest was
    # fixed at submit or set by this very update.
    row = {name: getattr(held, name) for name in _ROW_FIELDS}
    row.update(
        (name, value)
        for name, value in fields.items()
        # An expression (attempts + 1) is not the value: `held` has that.
        if name in _ROW_FIELDS and not hasattr(value, "resolve_expression")
    )
    return row


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
UNROUTED: dict[str, Any] = {"server": None, "queue_name": "", "wait_reason": ""}


def claim_holder(*, worker: str, attempt: int) -> Q:
    """Only the claim that is still current may change a running job: a worker whose
    lease was reaped and whose job was claimed again must not finish it."""
    return Q(worker=worker, attempts=attempt)


def retry_later(
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
    done = transition(
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
        **queued_fields(queue_timeout_seconds=task.queue_timeout_seconds, ready_at=run_after),
        **UNROUTED,
    )
    if done:
        dispatch_on_commit(task_id=task.pk, delay_seconds=delay)
        if backoff:
            metrics.tasks_retried.labels(task.task_type).inc()
    return done


def task_redispatch(*, task_id: UUID | str) -> None:
    """Send a PENDING job's message again (its message was spent on a better job)."""
    if Task.objects.filter(pk=task_id, state=TaskState.PENDING).update(dispatched_at=timezone.now()):
        dispatch_on_commit(task_id=task_id)
