"""What workers do: claim (alone or with batch companions), start, renew the lease,
report progress, and finish: succeed, fail (retrying when it may), time out, revoke."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from backserv_site.db.compiled import CompiledReads, Slot
from tasks import policy
from tasks.models import (
    ACTIVE_STATES,
    Task,
    TaskState,
)
from tasks.services.core import (
    UNROUTED,
    Change,
    Event,
    EventType,
    current_claim,
    lease_deadline,
    retry_later,
)
from tasks.usage import held_usage


def task_claim(*, task_id: UUID | str, worker: str, queue_name: str | None = None) -> bool:
    """Claim a PENDING job for a worker that runs it later (a remote server), only
    while it is still routed to `queue_name`, if given. Workers that run what they
    claim at once take it with tasks_claim_and_start."""
    return bool(
        Change(
            to=TaskState.RECEIVED,
            event=EventType.CLAIMED,
            match=Q(queue_name=queue_name) if queue_name is not None else None,
            data={"worker": worker},
            fields={**_claim_fields(worker), "attempts": F("attempts") + 1},
        ).run([task_id])
    )


def _claim_fields(worker: str) -> dict[str, Any]:
    """What a claim sets besides its attempt count."""
    return {
        "worker": worker,
        "claimed_at": timezone.now(),
        "lease_expires_at": lease_deadline(),
        "cancel_requested": False,
    }


def task_hand_back(*, task: Task, reason: str) -> bool:
    """Give back a claim whose job never reached the one who was to run it (a remote
    server refused the connection): PENDING again and routed afresh at once, its
    attempt unspent. Its HANDED_BACK event takes the claim out of the job's attempt
    history. Only a claim still held and not started; a job whose cancel came in
    meanwhile is not queued again (task_release ends it)."""
    return bool(
        Change(
            to=TaskState.PENDING,
            event=EventType.HANDED_BACK,
            sources=[TaskState.RECEIVED],
            match=current_claim(task) & Q(cancel_requested=False),
            data={"worker": task.worker, "attempt": task.attempts, "reason": reason},
            fields={
                "worker": "",
                "attempts": F("attempts") - 1,
                "lease_expires_at": None,
                "dispatched_at": timezone.now(),
                **UNROUTED,
            },
        ).run([task.pk])
    )


# How many of a queue's best waiting jobs a claim reads and tries in turn.
CLAIM_CANDIDATES = 8


def tasks_claim_and_start(*, queue_name: str, worker: str, size: int) -> list[Task]:
    """Claim the best waiting job of a queue (highest priority, then oldest) with up
    to `size` - 1 companions that can share its pipeline call (the same batch key),
    and start them, in one transaction: a worker that runs what it claims at once has
    no use for a claim of its own. [] when none is claimable.

    Deciding here rather than by message order gives priorities on every broker. The
    best few are read and tried in turn because other workers claim from the same
    list. Each job goes from PENDING to STARTED in one UPDATE (the leader's, then the
    companions'), and one INSERT logs every job's CLAIMED and STARTED events, as a
    claim and a start would: the jobs pass through RECEIVED, but nobody sees them wait
    there. Companions run with the leader, so they may pass jobs ahead of them in the
    queue: they take no time of their own."""
    now = timezone.now()
    seen = _best_claimable(queue_name=queue_name, now=now, count=CLAIM_CANDIDATES)
    if not seen:
        # No transaction for an empty queue: on SQLite it would lock the database.
        return []
    take = _take(worker=worker, queue_name=queue_name)
    with transaction.atomic():
        batch = _claim_batch_of(seen, size=size, now=now, claim=take.update)
        take.record(batch)
    take.log(batch)
    return batch


def _take(*, worker: str, queue_name: str) -> Change:
    """The claim and start of jobs read as PENDING: each only while still routed to
    `queue_name` and at the attempt count read (one taken or changed since is left
    alone); the copies read are brought up to date, so nothing is read back."""
    claim = _claim_fields(worker)
    return Change(
        to=TaskState.STARTED,
        event=EventType.STARTED,
        via=(EventType.CLAIMED, TaskState.RECEIVED, {"worker": worker}),
        match=Q(queue_name=queue_name),
        # The attempt count read, and one more: what attempts + 1 makes of a row
        # still at the count read, as a value the copies can take.
        holder=lambda task: Q(attempts=task.attempts),
        fields_of=lambda task: {"attempts": task.attempts + 1},
        data=_started_data,
        fields={**claim, "started_at": claim["claimed_at"]},
    )


def _started_data(task: Task, together: int) -> dict[str, Any]:
    data: dict[str, Any] = {"worker": task.worker, "attempt": task.attempts}
    if together > 1:
        data["batch_size"] = together
    return data


# Claims jobs read as PENDING, best first; returns those it claimed.
ClaimSome = Callable[[list[Task]], list[Task]]


def _claim_batch_of(seen: list[Task], *, size: int, now: datetime, claim: ClaimSome) -> list[Task]:
    """A batch's claims, from the read of the queue's best CLAIM_CANDIDATES jobs, each
    made by `claim`: the leader alone (the first of the read it takes), then its
    companions. They are taken from that read when it holds enough of them (any further
    one ranks behind every job read) or held the whole queue (it came back short): a
    burst's batch, or a job arriving at an idle worker, costs no second read."""
    position = next((index for index, task in enumerate(seen) if claim([task])), None)
    if position is None:
        return []
    leader = seen[position]
    if size < 2 or not leader.batch_key:
        return [leader]
    later = [task for task in seen[position + 1 :] if task.batch_key == leader.batch_key]
    if len(later) < size - 1 and len(seen) == CLAIM_CANDIDATES:
        later = _companions_waiting(leader=leader, limit=size - 1, now=now)
    return [leader, *_claim_some(later, claim=claim, limit=size - 1)]


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
    """Start a job claimed with task_claim (the worker's copy is brought up to date).
    A job whose cancel came in since its claim is not started."""
    return bool(
        Change(
            to=TaskState.STARTED,
            event=EventType.STARTED,
            match=Q(cancel_requested=False),
            holder=current_claim,
            data=_started_data,
            fields={"started_at": timezone.now()},
        ).run([task])
    )


def task_lease_renew(*, task: Task) -> bool:
    return bool(
        Task.objects.filter(pk=task.pk, state__in=ACTIVE_STATES)
        .filter(current_claim(task))
        .update(lease_expires_at=lease_deadline())
    )


def task_progress_report(*, task: Task, progress: float, step: int, total: int) -> bool:
    progress = min(max(progress, 0.0), 1.0)
    return bool(
        Change(
            to=None,
            event=EventType.PROGRESS,
            sources=[TaskState.STARTED],
            holder=current_claim,
            data={"progress": progress, "step": step, "total": total},
            fields={"progress": progress},
        ).run([task])
    )


def task_succeed(*, task: Task, result: dict[str, Any], last_step: tuple[int, int] | None = None) -> bool:
    """`last_step` (step, total): the pipeline's final step, logged as the job's last
    progress event in the same transaction, rather than in one of its own just before."""
    return bool(tasks_succeed(finished=[(task, result, last_step)]))


# A job of a pipeline call that ended well: the job, its result, its last step.
Finished = tuple[Task, dict[str, Any], tuple[int, int] | None]


def tasks_succeed(*, finished: list[Finished], batch_size: int = 1) -> list[Task]:
    """Record the jobs of one pipeline call as succeeded, in one UPDATE that sets each
    its own result, and one INSERT of their events; returns those still held, the
    others' results are the caller's to discard. `batch_size`: the jobs the call ran,
    who share its GPU time."""
    results = {task.pk: (result, last_step) for task, result, last_step in finished}
    completed_at = timezone.now()

    def last_progress(task: Task) -> list[Event]:
        last_step = results[task.pk][1]
        if last_step is None:
            return []
        step, total = last_step
        return [(EventType.PROGRESS, TaskState.STARTED, {"progress": 1.0, "step": step, "total": total})]

    return Change(
        to=TaskState.SUCCESS,
        event=EventType.SUCCEEDED,
        holder=current_claim,
        fields={"progress": 1.0, "completed_at": completed_at, "lease_expires_at": None},
        fields_of=lambda task: {
            "result": results[task.pk][0],
            **held_usage(task, completed_at=completed_at, batch_size=batch_size),
        },
        prior_events_of=last_progress,
    ).run([task for task, _, _ in finished])


def task_fail(*, task: Task, code: str, message: str, now: datetime | None = None, batch_size: int = 1) -> bool:
    """A failed run: back to PENDING after a backoff when the failure is retryable and
    attempts remain, else FAILURE. `batch_size`: the jobs of its pipeline call."""
    match = current_claim(task)
    if policy.is_retryable(code) and task.attempts < task.max_attempts:
        return retry_later(task=task, code=code, message=message, match=match, now=now or timezone.now())
    return _end_run(
        task=task,
        to=TaskState.FAILURE,
        event=EventType.FAILED,
        data={"code": code, "message": message, "attempt": task.attempts},
        fields={"error_code": code, "error_message": message},
        batch_size=batch_size,
    )


def task_time_out_running(*, task: Task, limit_seconds: float, batch_size: int = 1) -> bool:
    """The worker stopped a job that ran past its task type's run time limit."""
    message = f"The task ran longer than its limit of {limit_seconds:g} seconds."
    return _end_run(
        task=task,
        to=TaskState.TIMEOUT,
        event=EventType.TIMED_OUT,
        data={"code": "RUN_TIME_LIMIT", "message": message, "attempt": task.attempts},
        fields={"error_code": "RUN_TIME_LIMIT", "error_message": message},
        batch_size=batch_size,
    )


def task_revoke_running(*, task: Task, batch_size: int = 1) -> bool:
    """The worker stopped a job whose cancel was requested."""
    return _end_run(task=task, to=TaskState.REVOKED, event=EventType.REVOKED, batch_size=batch_size)


def _end_run(
    *,
    task: Task,
    to: TaskState,
    event: str,
    data: dict[str, Any] | None = None,
    fields: dict[str, Any] | None = None,
    batch_size: int = 1,
) -> bool:
    """End a claimed or running job the worker still holds, with its usage (its share
    of its pipeline call's `batch_size` jobs)."""
    completed_at = timezone.now()
    return bool(
        Change(
            to=to,
            event=event,
            sources=ACTIVE_STATES,
            match=current_claim(task),
            data=data,
            fields={
                **(fields or {}),
                "completed_at": completed_at,
                "lease_expires_at": None,
                **held_usage(task, completed_at=completed_at, batch_size=batch_size),
            },
        ).run([task.pk])
    )
