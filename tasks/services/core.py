"""The state machine's machinery, shared by every service: a change of one job or
many is one conditional UPDATE plus one INSERT of its events, in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Q, QuerySet, Value, When
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


# An event logged with a change: (type, state, data).
Event = tuple[str, TaskState, dict[str, Any]]

# The data of a change's event: the same for every job, or made from the job as
# changed and the number of jobs changed together.
EventData = dict[str, Any] | Callable[[Task, int], dict[str, Any]]

# What a job's events and log lines need of it: read back when the caller gave ids.
_ROW_FIELDS = ("state", "task_type", "worker", "attempts", "queued_at", "started_at", *EventAudience._fields)


class Change:
    """A change of one job or many, the one way services change a job: one
    conditional UPDATE, its events in one INSERT, the work its commit calls for (the
    events' notices and webhooks; a message for each job back in the queue; a routing
    pass when jobs end, since their servers' slots are free), then a log line and
    the metrics of each state change.

    Every guard is in the UPDATE's WHERE clause (the states it may come from, `match`,
    each job's `holder`), so of racing writers whoever commits second changes no row
    and gets [] back: exactly one wins.

    `run` takes the caller's copies of the jobs, or their ids. Copies are trusted for
    what the UPDATE does not set (who hears the events, the type, the times; read them
    whole), and those changed are brought up to date with what it set, so nothing is
    read back (should the transaction fail after all, they are the caller's to
    discard). Ids are read back, those changed, for the events and log lines.

    to: the state; None keeps the job's (a cancel flag, progress): the event then
        logs the state the job is in, and no transition is logged.
    sources: the states it may change from; every one the state machine allows by
        default.
    via: a state the jobs pass through in the same UPDATE, with its event (a claim
        and the start of its run): the change starts from that state's sources.
    match: a condition on every row; holder: one on each job (copies only), e.g.
        that its claim is still the worker's.
    fields: what the UPDATE sets on every row; fields_of: each job's own values
        (copies only), each set by a CASE on its id.
    prior_events_of: events a job logs just before its change's own (its last step).
    dispatch_delay: a job back in the queue is sent its message after commit, this
        many seconds later (a retry's backoff).
    """

    def __init__(
        self,
        *,
        to: TaskState | None,
        event: str,
        data: EventData | None = None,
        sources: Iterable[TaskState] | None = None,
        via: Event | None = None,
        match: Q | None = None,
        holder: Callable[[Task], Q] | None = None,
        fields: dict[str, Any] | None = None,
        fields_of: Callable[[Task], dict[str, Any]] | None = None,
        prior_events_of: Callable[[Task], list[Event]] | None = None,
        dispatch_delay: float = 0.0,
    ):
        self.to, self.event, self.data, self.via = to, event, data if data is not None else {}, via
        self.sources = _sources(to=to, via=via, sources=sources)
        self.match, self.holder = match, holder
        self.fields, self.fields_of = fields or {}, fields_of
        self.prior_events_of, self.dispatch_delay = prior_events_of, dispatch_delay
        self.now = timezone.now()

    def run(self, jobs: Sequence[Task] | Sequence[UUID | str]) -> list[Task]:
        """The whole change in one transaction: the jobs it changed."""
        # No savepoint when a caller's transaction is open: a savepoint is two more
        # round trips, and an error here aborts the caller's work anyway.
        with transaction.atomic(savepoint=False):
            changed = self.update(jobs)
            self.record(changed)
        self.log(changed)
        return changed

    def update(self, jobs: Sequence[Task] | Sequence[UUID | str]) -> list[Task]:
        """The UPDATE alone: the jobs it changed. Several may run in one transaction
        before one `record` of them all (a claim's leader, then its companions)."""
        if not jobs:
            return []
        copies = [job for job in jobs if isinstance(job, Task)]
        if not copies:
            return self._update_ids(list(jobs))
        if len(copies) != len(jobs):
            raise TypeError("A change takes copies of the jobs or their ids, not both.")
        return self._update_copies(copies)

    def _update_copies(self, tasks: list[Task]) -> list[Task]:
        ids = [task.pk for task in tasks]
        rows = self._rows()
        if self.holder is not None:
            held = Q()
            for task in tasks:
                held |= Q(pk=task.pk) & self.holder(task)
            rows = rows.filter(held)
        else:
            rows = rows.filter(pk__in=ids)
        own = {task.pk: self.fields_of(task) for task in tasks} if self.fields_of is not None else {}
        updated = rows.update(**self._values(_own_values(own)))
        if not updated:
            return []
        changed = set(rows_changed(ids, updated=updated, **self._stamp()))
        done = [task for task in tasks if task.pk in changed]
        for task in done:
            _bring_up_to_date(task, self._values(own.get(task.pk, {})))
        return done

    def _update_ids(self, ids: list[Any]) -> list[Task]:
        if self.holder is not None or self.fields_of is not None:
            raise ValueError("A change given ids has no copies to take a holder or own values from.")
        rows = self._rows()
        rows = rows.filter(pk=ids[0]) if len(ids) == 1 else rows.filter(pk__in=ids)
        updated = rows.update(**self._values({}))
        if not updated:
            return []
        # Read back for the events and log lines: the rows it changed, those carrying
        # its stamp when it changed fewer than given.
        read = Task.objects.only(*_ROW_FIELDS).order_by().filter(pk__in=ids)
        if updated < len(ids):
            read = read.filter(**self._stamp())
        by_id = {str(task.pk): task for task in read}
        return [by_id[str(pk)] for pk in ids if str(pk) in by_id]

    def _rows(self) -> QuerySet[Task]:
        rows = Task.objects.filter(state__in=self.sources)
        return rows.filter(self.match) if self.match is not None else rows

    def _values(self, own: dict[str, Any]) -> dict[str, Any]:
        """What the UPDATE sets: the state, the fields, the job's own values, the time."""
        state = {"state": self.to} if self.to is not None else {}
        return {**state, **self.fields, **own, "updated_at": self.now}

    def _stamp(self) -> dict[str, Any]:
        """What the UPDATE sets on every row that tells the rows it changed from others."""
        return {"updated_at": self.now, **({"state": self.to} if self.to is not None else {})}

    def record(self, changed: list[Task]) -> None:
        """The events of the jobs changed, in one INSERT, and what their commit calls for."""
        if not changed:
            return
        record_events(
            [
                (task.pk, kind, state, data, EventAudience(task.owner_id, task.webhook, task.webhook_events))
                for task in changed
                for kind, state, data in self._events(task, len(changed))
            ]
        )
        if self.to in TERMINAL_STATES:
            # Their servers have free slots now: jobs waiting for one may take them.
            route_waiting_on_commit()
        if self.to == TaskState.PENDING:
            for task in changed:
                dispatch_on_commit(task_id=task.pk, delay_seconds=self.dispatch_delay)

    def log(self, changed: list[Task]) -> None:
        """Once committed, a log line and the metrics of each state change made (the
        one passed through too)."""
        if self.to is None:
            return
        for task in changed:
            if self.via is not None:
                kind, state, data = self.via
                _record_transition(task=task, to=state, event=kind, data=data, now=self.now)
            data = self._data(task, len(changed))
            _record_transition(task=task, to=self.to, event=self.event, data=data, now=self.now)

    def _events(self, task: Task, together: int) -> list[Event]:
        """A changed job's events, in order: those before its change, the one of the
        state it passed through, its change's own."""
        before = self.prior_events_of(task) if self.prior_events_of is not None else []
        passed = [self.via] if self.via is not None else []
        return [*before, *passed, (self.event, self._state_after(task), self._data(task, together))]

    def _state_after(self, task: Task) -> TaskState:
        if self.to is not None:
            return self.to
        # Kept: the one state the change applies to, else the one the job was read in.
        return next(iter(self.sources)) if len(self.sources) == 1 else TaskState(task.state)

    def _data(self, task: Task, together: int) -> dict[str, Any]:
        return self.data(task, together) if callable(self.data) else self.data


def _sources(*, to: TaskState | None, via: Event | None, sources: Iterable[TaskState] | None) -> frozenset[TaskState]:
    """The states a change may start from, checked against the state machine."""
    if to is None:
        if sources is None:
            raise ValueError("A change that keeps the state must name the states it applies to.")
        return frozenset(sources)
    if via is not None and via[1] not in TRANSITIONS[to]:
        raise ValueError(f"{via[1]} -> {to} is not a transition of the state machine")
    allowed = TRANSITIONS[via[1] if via is not None else to]
    from_states = frozenset(sources) if sources is not None else allowed
    if not from_states <= allowed:
        raise ValueError(f"{sorted(from_states - allowed)} -> {to} is not a transition of the state machine")
    return from_states


def _own_values(values: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    """Each job's own values for one UPDATE of them all: per field, the value when
    every job has the same one, else a CASE on the job's id (a job without a value for
    it keeps its own)."""
    missing = object()
    cases: dict[str, Any] = {}
    for name in sorted({name for own in values.values() for name in own}):
        given = [own.get(name, missing) for own in values.values()]
        if all(value is not missing and value == given[0] for value in given):
            cases[name] = given[0]
            continue
        field = Task._meta.get_field(name)
        whens = [When(pk=pk, then=Value(own[name], output_field=field)) for pk, own in values.items() if name in own]
        cases[name] = Case(*whens, default=F(name), output_field=field)
    return cases


def _bring_up_to_date(task: Task, values: dict[str, Any]) -> None:
    for name, value in values.items():
        # An expression (attempts + 1) is not the value: a change of copies sets values.
        if not hasattr(value, "resolve_expression"):
            setattr(task, Task._meta.get_field(name).attname, value)


def _record_transition(*, task: Task, to: TaskState, event: str, data: dict[str, Any], now: datetime) -> None:
    """One structured log line and the job metrics for a state change."""
    fields: dict[str, Any] = {
        "task_id": str(task.pk),
        "task_type": task.task_type,
        "state": str(to),
        "event": event,
        "worker": task.worker or data.get("worker", ""),
        "attempt": task.attempts,
    }
    if to == TaskState.STARTED and task.queued_at is not None:
        fields["queue_wait_s"] = round((now - task.queued_at).total_seconds(), 3)
        metrics.task_queue_wait.labels(task.task_type).observe(fields["queue_wait_s"])
    if to in TERMINAL_STATES:
        if task.started_at is not None:
            fields["duration_s"] = round((now - task.started_at).total_seconds(), 3)
            metrics.task_duration.labels(task.task_type).observe(fields["duration_s"])
        metrics.tasks_completed.labels(task.task_type, str(to)).inc()
    if "code" in data:
        fields["error_code"] = data["code"]
    logger.info("task %s %s -> %s", task.pk, event, to, extra=fields)


# A job going back to PENDING is routed afresh when its message is sent.
UNROUTED: dict[str, Any] = {"server": None, "queue_name": "", "wait_reason": ""}


def claim_holder(*, worker: str, attempt: int) -> Q:
    """Only the claim that is still current may change a running job: a worker whose
    lease was reaped and whose job was claimed again must not finish it."""
    return Q(worker=worker, attempts=attempt)


def current_claim(task: Task) -> Q:
    """A Change's `holder` for what only the worker holding a job may do: the claim
    in its copy of the job must still be the job's."""
    return claim_holder(worker=task.worker, attempt=task.attempts)


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
    done = Change(
        to=TaskState.PENDING,
        event=event,
        sources=ACTIVE_STATES,
        match=match,
        data={**data, "retry_in": round(delay, 3)},
        fields={
            "error_code": "",
            "error_message": "",
            "progress": 0.0,
            "started_at": None,
            "worker": "",
            "lease_expires_at": None,
            "run_after": run_after if backoff else None,
            "dispatched_at": run_after,
            **queued_fields(queue_timeout_seconds=task.queue_timeout_seconds, ready_at=run_after),
            **UNROUTED,
        },
        dispatch_delay=delay,
    ).run([task.pk])
    if done and backoff:
        metrics.tasks_retried.labels(task.task_type).inc()
    return bool(done)


def task_redispatch(*, task_id: UUID | str) -> None:
    """Send a PENDING job's message again (its message was spent on a better job)."""
    if Task.objects.filter(pk=task_id, state=TaskState.PENDING).update(dispatched_at=timezone.now()):
        dispatch_on_commit(task_id=task_id)
