"""Reads beyond a .get(): queue position, ETA, the event log after a point, attempt
history. Stats and the dashboard's figures are in tasks.stats."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.db.models import (
    BooleanField,
    Case,
    Count,
    Exists,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.expressions import CombinedExpression
from django.utils import timezone

from accounts.models import User
from backserv_site.db.compiled import CompiledRead, CompiledReads, CompiledSql, Slot
from tasks.models import ACTIVE_STATES, UNFINISHED_STATES, Task, TaskEvent, TaskState

# How many recent runs of a task type the ETA is drawn from, and how far back.
_ETA_SAMPLE = 20
_ETA_LOOKBACK = timedelta(days=1)


def tasks_with_read_figures() -> QuerySet[Task]:
    """Every job, with what reading one shows beyond its row counted in the same query:
    its queue position (queue_ahead), its queue's lanes (queue_lanes) and whether it has
    an attempt to show (ever_claimed). The functions below use them when a job was read
    so, and query otherwise. Filter it down to the jobs wanted."""
    return Task.objects.annotate(
        queue_ahead=Case(
            When(
                state=TaskState.PENDING,
                then=_queue_ahead(
                    queue_name=OuterRef("queue_name"),
                    priority=OuterRef("priority"),
                    submitted_at=OuterRef("submitted_at"),
                ),
            ),
            output_field=IntegerField(),
        ),
        queue_lanes=_queue_lanes(queue_name=OuterRef("queue_name")),
        ever_claimed=Exists(TaskEvent.objects.filter(task=OuterRef("pk"), type=TaskEvent.Type.CLAIMED)),
    )


def _read_figures_by_key(*, owned: bool) -> CompiledRead[Task]:
    def build() -> QuerySet[Task]:
        tasks = tasks_with_read_figures().filter(pk=Slot("pk", Task._meta.pk))
        if owned:
            tasks = tasks.filter(owner_id=Slot("owner_id", Task._meta.get_field("owner").target_field))
        return tasks.order_by()

    return CompiledRead(build)


_read_figures_of_any = _read_figures_by_key(owned=False)
_read_figures_of_owners = _read_figures_by_key(owned=True)


def task_with_read_figures(task_id: UUID, *, owner_id: Any | None = None) -> Task | None:
    """One job, read as tasks_with_read_figures reads it (only if `owner_id` owns it,
    when given), or None. The status poll's read: the API's most frequent call, whose
    four subqueries cost Django more to compile than the database to answer, so the
    SQL is compiled once (see backserv_site.db.compiled)."""
    if owner_id is None:
        found = _read_figures_of_any(pk=task_id)
    else:
        found = _read_figures_of_owners(pk=task_id, owner_id=owner_id)
    return found[0] if found else None


def rows_changed(ids: list[Any], *, updated: int, **stamp: Any) -> list[Any]:
    """Which of the jobs `ids` an UPDATE that changed `updated` rows changed: all of
    them when it changed as many as it was given (ids are unique); otherwise, read
    back, those that now carry `stamp`, what it set (its instant among it)."""
    if updated == len(ids):
        return list(ids)
    return list(Task.objects.filter(pk__in=ids, **stamp).order_by().values_list("pk", flat=True))


def task_queue_position(task: Task) -> int | None:
    """How many waiting jobs would be claimed before this one (0: it is next), by the
    claim's own order: higher priority first, then older."""
    if task.state != TaskState.PENDING:
        return None
    if hasattr(task, "queue_ahead"):
        return task.queue_ahead
    read = task_with_read_figures(task.pk)
    return read.queue_ahead if read is not None else None


def _queue_ahead(*, queue_name: Any, priority: Any, submitted_at: Any) -> CombinedExpression:
    """The waiting jobs ahead of a job of this queue, priority and submit time (values,
    or the outer query's columns), as two counts: each one a range of the claim-order
    index, where one count of the two cases joined by OR would read every waiting job
    of the queue."""
    waiting = Task.objects.filter(queue_name=queue_name, state=TaskState.PENDING)
    higher, older = _ahead_of(priority=priority, submitted_at=submitted_at)
    return _count(waiting.filter(higher)) + _count(waiting.filter(older))


def _queue_lanes(*, queue_name: Any) -> Subquery:
    """How many jobs of a queue run side by side now."""
    return _count(Task.objects.filter(queue_name=queue_name, state__in=ACTIVE_STATES))


def _count(tasks: QuerySet[Task]) -> Subquery:
    """How many jobs a (correlated) subquery matches, as one scalar: COUNT as a plain
    function, so no GROUP BY (0 when nothing matches, where a grouped count has no row).
    COUNT(*), not of a column: an index that holds the filtered columns answers it
    without reading the rows."""
    counted = tasks.order_by().annotate(count=Func(template="COUNT(*)", output_field=IntegerField())).values("count")
    return Subquery(counted, output_field=IntegerField())


@dataclass(frozen=True)
class SubmitFigures:
    over_quota: bool
    queue_ahead: int
    queue_lanes: int


def submit_figures(*, task: Task, quota: int) -> SubmitFigures:
    """What a submit counts once its job is inserted, in one query: whether its owner
    now has more than `quota` unfinished jobs (0: no limit), and the job's queue
    position and its queue's lanes, which the submit's answer shows without reading the
    job back. Bounded by the quota: it asks whether a job beyond the quota exists, not
    how many there are. Compiled once per quota (see backserv_site.db.compiled):
    building and compiling its four subqueries took twice as long as running them."""
    (figures,) = _submit_figures_reads(
        quota,
        owner_id=task.owner_id,
        queue_name=task.queue_name,
        priority=task.priority,
        submitted_at=task.submitted_at,
    )
    return SubmitFigures(
        over_quota=bool(figures.over_quota), queue_ahead=figures.queue_ahead, queue_lanes=figures.queue_lanes
    )


def _submit_figures(quota: int) -> QuerySet[User]:
    owner_id = Slot("owner_id", User._meta.pk)
    queue_name = Slot("queue_name", Task._meta.get_field("queue_name"))
    ahead = _queue_ahead(
        queue_name=queue_name,
        priority=Slot("priority", Task._meta.get_field("priority")),
        submitted_at=Slot("submitted_at", Task._meta.get_field("submitted_at")),
    )
    unfinished = Task.objects.filter(owner_id=owner_id, state__in=UNFINISHED_STATES).order_by()
    over_quota = Exists(unfinished[quota : quota + 1]) if quota else Value(False, output_field=BooleanField())
    return (
        User.objects.filter(pk=owner_id)
        .annotate(over_quota=over_quota, queue_ahead=ahead, queue_lanes=_queue_lanes(queue_name=queue_name))
        .only("pk")
    )


# By quota: its bound is part of the SQL. Few quotas are in use (the default, and the
# limits operators give some users).
_submit_figures_reads = CompiledReads(_submit_figures)
# The figures alone, for a submit made in one statement, which checks the quota itself.
_submit_figures_statement = CompiledSql(lambda: _submit_figures(0))


def submit_figures_sql(*, task: Task) -> tuple[str, list[Any]]:
    """The SQL of submit_figures without the quota, and its parameters: the new job's
    queue position and its queue's lanes, as columns queue_ahead and queue_lanes, counted
    in the submit's own statement (tasks.services.submit_statement)."""
    return _submit_figures_statement(
        owner_id=task.owner_id, queue_name=task.queue_name, priority=task.priority, submitted_at=task.submitted_at
    )


def _ahead_of(*, priority: Any, submitted_at: Any) -> tuple[Q, Q]:
    """The waiting jobs the claim takes before a job of this priority and submit time:
    those of higher priority, and the older ones of the same."""
    return Q(priority__gt=priority), Q(priority=priority, submitted_at__lt=submitted_at)


# (task type) -> (monotonic time it was read, median run seconds): an estimate read at
# most every _RUN_SECONDS_TTL per process, not once per job shown.
_run_seconds_read: dict[str, tuple[float, float | None]] = {}
_RUN_SECONDS_TTL = 10.0


def task_type_run_seconds(task_type: str) -> float | None:
    """The median run time of the type's recent successful jobs, or None without any;
    read again once _RUN_SECONDS_TTL has passed (it is an estimate, and the query
    cost a status read about a fifth of its time)."""
    read = _run_seconds_read.get(task_type)
    if read is not None and time.monotonic() - read[0] < _RUN_SECONDS_TTL:
        return read[1]
    seconds = _task_type_run_seconds(task_type)
    _run_seconds_read[task_type] = (time.monotonic(), seconds)
    return seconds


def run_seconds_forget() -> None:
    """Drop the read run times (tests that make run history of their own)."""
    _run_seconds_read.clear()


def _task_type_run_seconds(task_type: str) -> float | None:
    since = timezone.now() - _ETA_LOOKBACK
    runs = (
        Task.objects.filter(task_type=task_type, state=TaskState.SUCCESS, completed_at__gte=since)
        .exclude(started_at=None)
        .order_by("-completed_at")
        .values_list("started_at", "completed_at")[:_ETA_SAMPLE]
    )
    durations = [(completed - started).total_seconds() for started, completed in runs]
    return statistics.median(durations) if durations else None


def queue_lanes(task: Task) -> int:
    """How many jobs of the job's queue run side by side now (at least one)."""
    if hasattr(task, "queue_lanes"):
        return max(task.queue_lanes, 1)
    return max(Task.objects.filter(queue_name=task.queue_name, state__in=ACTIVE_STATES).count(), 1)


def eta_seconds(*, run_seconds: float, ahead: int, lanes: int) -> float:
    return round(run_seconds * (ahead // lanes + 1), 1)


def task_queue_positions(tasks: Iterable[Task]) -> dict[Any, int | None]:
    """task_queue_position of many jobs (a batch submit, a listing): one query per
    queue, each job's count a filtered aggregate of the same scan."""
    positions: dict[Any, int | None] = {}
    waiting_by_queue: dict[str, list[Task]] = {}
    for task in tasks:
        if task.state == TaskState.PENDING:
            waiting_by_queue.setdefault(task.queue_name, []).append(task)
        else:
            positions[task.pk] = None
    for queue_name, waiting in waiting_by_queue.items():
        ahead = {}
        for index, task in enumerate(waiting):
            higher, older = _ahead_of(priority=task.priority, submitted_at=task.submitted_at)
            ahead[f"ahead_{index}"] = Count("pk", filter=higher | older)
        counts = Task.objects.filter(queue_name=queue_name, state=TaskState.PENDING).aggregate(**ahead)
        positions.update({task.pk: counts[f"ahead_{index}"] for index, task in enumerate(waiting)})
    return positions


def task_events_after(*, task_id: UUID | str, after_id: int, limit: int = 500) -> list[TaskEvent]:
    return list(TaskEvent.objects.filter(task_id=task_id, id__gt=after_id).order_by("id")[:limit])


def owner_events_after(*, owner_id: Any, after_id: int, limit: int = 500) -> list[TaskEvent]:
    return list(TaskEvent.objects.filter(task__owner_id=owner_id, id__gt=after_id).order_by("id")[:limit])


def owner_last_event_id(*, owner_id: Any) -> int:
    last = TaskEvent.objects.filter(task__owner_id=owner_id).order_by("-id").values_list("id", flat=True).first()
    return last or 0


def tasks_queued_by_type() -> dict[str, int]:
    rows = Task.objects.filter(state=TaskState.PENDING).values("task_type").annotate(count=Count("pk"))
    return {row["task_type"]: row["count"] for row in rows.order_by()}


# Attempts -----------------------------------------------------------------------------

_ATTEMPT_ENDS = {
    TaskEvent.Type.SUCCEEDED: "succeeded",
    TaskEvent.Type.FAILED: "failed",
    TaskEvent.Type.REVOKED: "revoked",
    TaskEvent.Type.TIMED_OUT: "timed_out",
    TaskEvent.Type.REQUEUED: "requeued",
    TaskEvent.Type.RETRY_SCHEDULED: "retry_scheduled",
}


def task_attempts_history(*, task: Task) -> list[dict[str, Any]]:
    """Every run of a job, read from its event log: who ran it, when it was claimed,
    started and ended, how it ended and with which error. A claim handed back (its
    job never reached its runner) spent no attempt and is left out."""
    attempts: list[dict[str, Any]] = []
    if hasattr(task, "ever_claimed") and not task.ever_claimed:
        return attempts
    current: dict[str, Any] | None = None
    # Named types only: a long job has hundreds of progress events that say nothing here.
    wanted = [TaskEvent.Type.CLAIMED, TaskEvent.Type.STARTED, TaskEvent.Type.HANDED_BACK, *_ATTEMPT_ENDS]
    # Not task.events: the related manager would read each event's deferred task_id
    # back, one query per event, to attach the job to it.
    events = (
        TaskEvent.objects.filter(task_id=task.pk, type__in=wanted).only("type", "data", "created_at").order_by("id")
    )
    for event in events:
        if event.type == TaskEvent.Type.CLAIMED:
            current = {
                "attempt": len(attempts) + 1,
                "worker": event.data.get("worker", ""),
                "claimed_at": event.created_at,
                "started_at": None,
                "ended_at": None,
                "outcome": "running",
                "error": None,
            }
            attempts.append(current)
        elif current is not None and event.type == TaskEvent.Type.HANDED_BACK:
            attempts.pop()  # the claim just read: it spent no attempt
            current = None
        elif current is not None and event.type == TaskEvent.Type.STARTED:
            current["started_at"] = event.created_at
        elif current is not None and event.type in _ATTEMPT_ENDS:
            current["ended_at"] = event.created_at
            current["outcome"] = _ATTEMPT_ENDS[event.type]
            if event.data.get("code"):
                current["error"] = {"code": event.data["code"], "message": event.data.get("message", "")}
            elif event.data.get("reason"):
                current["error"] = {"code": "", "message": event.data["reason"]}
            current = None
    return attempts
