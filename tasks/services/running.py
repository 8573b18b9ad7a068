"""What workers do: claim (alone or with batch companions), start, renew the lease,
report progress, and finish: succeed, fail (retrying when it may), time out, revoke."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from backserv_site.db.compiled import CompiledReads, Slot
from tasks import policy
from tasks.events import EventAudience
from tasks.models import (
    ACTIVE_STATES,
    Task,
    TaskState,
)
from tasks.services.core import (
    EventType,
    HeldEvents,
    PriorEvent,
    claim_holder,
    held_changed,
    held_events_recorded,
    held_transitions_logged,
    lease_deadline,
    record_event,
    retry_later,
    transition,
    transition_held,
)
from tasks.usage import held_usage


def task_claim(*, task_id: UUID | str, worker: str, queue_name: str | None = None, seen: Task | None = None) -> bool:
    """Claim a PENDING job (only while it is still routed to `queue_name`, if given).

    `seen`: the job as the caller read it while PENDING. The claim then also requires
    the attempt count it read, so on success the caller's copy is brought up to date
    here, with nothing read back."""
    claim = _Claim(worker)
    match = Q(queue_name=queue_name) if queue_name is not None else Q()
    if seen is not None:
        match &= Q(attempts=seen.attempts)
    claimed = transition(
        task_id=task_id,
        to=TaskState.RECEIVED,
        event=EventType.CLAIMED,
        match=match,
        data={"worker": worker},
        # What the job will be once claimed, for the event and the log line.
        held=claim.applied(copy.copy(seen)) if seen is not None else None,
        **claim.fields,
    )
    if claimed and seen is not None:
        claim.applied(seen)
    return claimed


class _Claim:
    """One claim's values: the fields its UPDATE sets, and the same applied to a read
    copy of a job, so the caller's copy is up to date with nothing read back."""

    # The state a claim leaves a job in, and the one it passes through on the way.
    state: TaskState = TaskState.RECEIVED
    via: TaskState | None = None

    def __init__(self, worker: str):
        self.worker = worker
        self.now, self.lease_expires_at = timezone.now(), lease_deadline()
        self.fields = {
            "worker": worker,
            "attempts": F("attempts") + 1,
            "claimed_at": self.now,
            "lease_expires_at": self.lease_expires_at,
            "cancel_requested": False,
        }

    def applied(self, task: Task) -> Task:
        task.state, task.worker, task.attempts = TaskState.RECEIVED, self.worker, task.attempts + 1
        task.claimed_at, task.lease_expires_at, task.cancel_requested = self.now, self.lease_expires_at, False
        return task

    def events(self, task: Task, batch_size: int) -> list[PriorEvent]:
        """A claimed job's events, in order."""
        return [(EventType.CLAIMED, TaskState.RECEIVED, {"worker": self.worker})]

    def changed(self, tasks: list[Task], *, queue_name: str) -> list[Task]:
        """Claim read PENDING jobs still routed to `queue_name` and at the attempt count
        read, in one UPDATE, without their events; returns those claimed, brought up to
        date (a job taken or changed since it was read is left out)."""
        held = [self.applied(copy.copy(task)) for task in tasks]
        done = held_changed(
            tasks=held,
            to=self.state,
            via=self.via,
            now=self.now,
            match=Q(queue_name=queue_name),
            holder_of=lambda task: Q(attempts=task.attempts - 1),
            **self.fields,
        )
        ids = {task.pk for task in done}
        return [self.applied(task) for task in tasks if task.pk in ids]

    def recorded(self, tasks: list[Task]) -> HeldEvents:
        """The claimed jobs' events, in one INSERT; returns them for the log lines."""
        changes = [(task, self.events(task, len(tasks))) for task in tasks]
        held_events_recorded(changes)
        return changes

    def logged(self, changes: HeldEvents) -> None:
        held_transitions_logged(changes, fields=self.fields, now=self.now)


class _Take(_Claim):
    """A claim and the start of the run, in one UPDATE (see tasks_claim_and_start)."""

    state, via = TaskState.STARTED, TaskState.RECEIVED

    def __init__(self, worker: str):
        super().__init__(worker)
        self.fields["started_at"] = self.now

    def applied(self, task: Task) -> Task:
        super().applied(task)
        task.state, task.started_at = TaskState.STARTED, self.now
        return task

    def events(self, task: Task, batch_size: int) -> list[PriorEvent]:
        """A taken job's two events, as a claim and then a start would log them."""
        started: dict[str, Any] = {"worker": task.worker, "attempt": task.attempts}
        if batch_size > 1:
            started["batch_size"] = batch_size
        return [*super().events(task, batch_size), (EventType.STARTED, TaskState.STARTED, started)]


# How many of a queue's best waiting jobs a claim reads and tries in turn.
CLAIM_CANDIDATES = 8


def task_claim_next(
    *, queue_name: str, worker: str, candidates: int = CLAIM_CANDIDATES, now: datetime | None = None
) -> Task | None:
    """Claim the best waiting job of a queue: highest priority, then oldest."""
    claimed = task_claim_batch(queue_name=queue_name, worker=worker, size=1, candidates=candidates, now=now)
    return claimed[0] if claimed else None


def task_claim_batch(
    *, queue_name: str, worker: str, size: int, candidates: int = CLAIM_CANDIDATES, now: datetime | None = None
) -> list[Task]:
    """Claim the best waiting job of a queue and up to `size` - 1 companions that can
    share its pipeline call (see task_claim_companions); [] when none is claimable.

    Deciding here rather than by message order gives priorities on every broker. The
    best few are read and tried in turn because other workers claim from the same
    list. The companions are taken from that read when it holds enough of them (any
    further one ranks behind every job read) or held the whole queue (it came back
    short): a burst's batch, or a job arriving at an idle worker, costs no second read."""
    now = now or timezone.now()
    seen = _best_claimable(queue_name=queue_name, now=now, count=candidates)
    return _claim_batch_of(seen, size=size, candidates=candidates, now=now, claim=_claims_of(worker, queue_name))


# Claims jobs read as PENDING, best first; returns those it claimed.
ClaimSome = Callable[[list[Task]], list[Task]]


def _claim_batch_of(seen: list[Task], *, size: int, candidates: int, now: datetime, claim: ClaimSome) -> list[Task]:
    """task_claim_batch's claims, from its read of the best `candidates` jobs, each made
    by `claim`: the leader alone (the first of the read it takes), then its companions."""
    position = next((index for index, task in enumerate(seen) if claim([task])), None)
    if position is None:
        return []
    leader = seen[position]
    if size < 2 or not leader.batch_key:
        return [leader]
    later = [task for task in seen[position + 1 :] if task.batch_key == leader.batch_key]
    if len(later) < size - 1 and len(seen) == candidates:
        later = _companions_waiting(leader=leader, limit=size - 1, now=now)
    return [leader, *_claim_some(later, claim=claim, limit=size - 1)]


def task_claim_companions(*, leader: Task, worker: str, limit: int, now: datetime | None = None) -> list[Task]:
    """Claim up to `limit` more waiting jobs of the leader's queue that can share its
    pipeline call (the same batch key), best first. They run with the leader, so they
    may pass jobs ahead of them in the queue: they take no time of their own."""
    if limit < 1 or not leader.batch_key:
        return []
    waiting = _companions_waiting(leader=leader, limit=limit, now=now or timezone.now())
    return _claim_some(waiting, claim=_claims_of(worker, leader.queue_name), limit=limit)


def _companions_waiting(*, leader: Task, limit: int, now: datetime) -> list[Task]:
    """The best waiting jobs that could join the leader's pipeline call, twice as many
    as wanted: others may take some first."""
    waiting = _claimable(queue_name=leader.queue_name, now=now).filter(batch_key=leader.batch_key)
    return list(waiting.exclude(pk=leader.pk)[: limit * 2])


def _claim_some(tasks: list[Task], *, claim: ClaimSome, limit: int) -> list[Task]:
    """Claim read jobs, best first, up to `limit`, a few at a time in one statement
    each; those taken meanwhile are skipped."""
    claimed: list[Task] = []
    while tasks and len(claimed) < limit:
        wanted = limit - len(claimed)
        claimed += claim(tasks[:wanted])
        tasks = tasks[wanted:]
    return claimed


def _claims_of(worker: str, queue_name: str) -> ClaimSome:
    """Claims to RECEIVED, each with its own transaction (tasks_claim); one job alone
    as task_claim claims it."""

    def claim(tasks: list[Task]) -> list[Task]:
        if len(tasks) == 1:
            return tasks if task_claim(task_id=tasks[0].pk, worker=worker, seen=tasks[0]) else []
        return tasks_claim(tasks=tasks, worker=worker, queue_name=queue_name)

    return claim


def tasks_claim(*, tasks: list[Task], worker: str, queue_name: str) -> list[Task]:
    """Claim read PENDING jobs still routed to `queue_name` in one transaction: one
    UPDATE, one read of which rows it changed (only when it changed fewer than given),
    one INSERT of their events. Returns the claimed ones, brought up to date as
    task_claim does its `seen`; a job taken or changed since it was read is left out."""
    claim = _Claim(worker)
    with transaction.atomic(savepoint=False):
        claimed = claim.changed(tasks, queue_name=queue_name)
        changes = claim.recorded(claimed)
    claim.logged(changes)
    return claimed


def _claimable(*, queue_name: Any, now: Any) -> QuerySet[Task]:
    """A queue's waiting jobs, best first. Jobs still in a retry's backoff, or past
    their queue deadline, are not candidates."""
    return (
        Task.objects.filter(queue_name=queue_name, state=TaskState.PENDING)
        .filter(Q(run_after__isnull=True) | Q(run_after__lte=now))
        .filter(Q(queue_deadline__isnull=True) | Q(queue_deadline__gt=now))
        .order_by("-priority", "submitted_at")
    )


def _best_claimable_query(count: int) -> QuerySet[Task]:
    slots = {
        "queue_name": Slot("queue_name", Task._meta.get_field("queue_name")),
        "now": Slot("now", Task._meta.get_field("run_after")),
    }
    return _claimable(**slots)[:count]


# Every run starts with this read, so its SQL is compiled once per count (see
# backserv_site.db.compiled): building it took Django longer than Postgres took to answer.
_best_claimable_reads = CompiledReads(_best_claimable_query)


def _best_claimable(*, queue_name: str, now: datetime, count: int) -> list[Task]:
    """The `count` best claimable jobs of a queue."""
    return _best_claimable_reads(count, queue_name=queue_name, now=now)


def task_start(*, task: Task) -> bool:
    """Start a job run alone (a batch starts with tasks_start)."""
    data: dict[str, Any] = {"worker": task.worker, "attempt": task.attempts}
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


def tasks_start(*, tasks: list[Task]) -> list[Task]:
    """Start the claimed jobs of one pipeline call in one go (see transition_held);
    returns those started. A job whose cancel came in since its claim is not started."""
    if len(tasks) == 1:
        return tasks if task_start(task=tasks[0]) else []
    started_at = timezone.now()
    started = transition_held(
        tasks=tasks,
        to=TaskState.STARTED,
        event=EventType.STARTED,
        data_of=lambda task: {"worker": task.worker, "attempt": task.attempts, "batch_size": len(tasks)},
        match=Q(cancel_requested=False),
        started_at=started_at,
    )
    for task in started:
        task.state, task.started_at = TaskState.STARTED, started_at
    return started


def tasks_claim_and_start(*, queue_name: str, worker: str, size: int) -> list[Task]:
    """Claim the best waiting job of a queue with its batch companions (see
    task_claim_batch) and start them, in one transaction: a worker that runs what it
    claims at once has no use for a claim of its own. Each job goes from PENDING to
    STARTED in one UPDATE (the leader's, then the companions'), and one INSERT logs
    every job's CLAIMED and STARTED events, as a claim and a start would: the jobs
    pass through RECEIVED, but nobody sees them wait there."""
    now = timezone.now()
    seen = _best_claimable(queue_name=queue_name, now=now, count=CLAIM_CANDIDATES)
    if not seen:
        # No transaction for an empty queue: on SQLite it would lock the database.
        return []
    take = _Take(worker)
    with transaction.atomic():
        batch = _claim_batch_of(
            seen,
            size=size,
            candidates=CLAIM_CANDIDATES,
            now=now,
            claim=lambda tasks: take.changed(tasks, queue_name=queue_name),
        )
        changes = take.recorded(batch)
    take.logged(changes)
    return batch


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
    return bool(tasks_succeed(finished=[(task, result, last_step)]))


# A job of a pipeline call that ended well: the job, its result, its last step.
Finished = tuple[Task, dict[str, Any], tuple[int, int] | None]


def tasks_succeed(*, finished: list[Finished], batch_size: int = 1) -> list[Task]:
    """Record the jobs of one pipeline call as succeeded, in one transaction (see
    transition_held); returns those still held, the others' results are the caller's
    to discard. `batch_size`: the jobs the call ran, who share its GPU time."""
    results = {task.pk: (result, last_step) for task, result, last_step in finished}
    completed_at = timezone.now()

    def last_progress(task: Task) -> list[PriorEvent]:
        last_step = results[task.pk][1]
        if last_step is None:
            return []
        step, total = last_step
        return [(EventType.PROGRESS, TaskState.STARTED, {"progress": 1.0, "step": step, "total": total})]

    return transition_held(
        tasks=[task for task, _, _ in finished],
        to=TaskState.SUCCESS,
        event=EventType.SUCCEEDED,
        data_of=lambda task: {},
        fields_of=lambda task: {
            "result": results[task.pk][0],
            **held_usage(task, completed_at=completed_at, batch_size=batch_size),
        },
        prior_events_of=last_progress,
        progress=1.0,
        completed_at=completed_at,
        lease_expires_at=None,
    )


def task_fail(*, task: Task, code: str, message: str, now: datetime | None = None, batch_size: int = 1) -> bool:
    """A failed run: back to PENDING after a backoff when the failure is retryable and
    attempts remain, else FAILURE. `batch_size`: the jobs of its pipeline call."""
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
        lease_expires_at=None,
        **_ended(task, batch_size=batch_size),
    )


def _ended(task: Task, *, batch_size: int) -> dict[str, Any]:
    """The fields of a held job ending now: when, and its usage."""
    completed_at = timezone.now()
    return {"completed_at": completed_at, **held_usage(task, completed_at=completed_at, batch_size=batch_size)}


def task_time_out_running(*, task: Task, limit_seconds: float, batch_size: int = 1) -> bool:
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
        lease_expires_at=None,
        **_ended(task, batch_size=batch_size),
    )


def task_revoke_running(*, task: Task, batch_size: int = 1) -> bool:
    """The worker stopped a job whose cancel was requested."""
    return transition(
        task_id=task.pk,
        to=TaskState.REVOKED,
        event=EventType.REVOKED,
        sources=ACTIVE_STATES,
        match=claim_holder(worker=task.worker, attempt=task.attempts),
        lease_expires_at=None,
        **_ended(task, batch_size=batch_size),
    )
