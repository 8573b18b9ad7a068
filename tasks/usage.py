"""Usage: what a job cost as it ended (its wait in the queue, its share of GPU time), and
what a user's jobs cost over a range of days.

The figures a job records are computed here, from times the worker already holds, so
the services that end jobs only add them to the UPDATE they make anyway. The reads
count jobs by the day they ended (UTC): the days the sweep has rolled up (UsageDay,
see tasks.usage_rollup) from their sums, the days since from the jobs themselves, so
a month of a user with a million jobs costs a hundred rows and one day of jobs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, Max, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from tasks.models import Task, TaskState, UsageDay, UsageRolledDay

_FAILED_STATES = (TaskState.FAILURE, TaskState.TIMEOUT)


def usage_fields(
    *, queued_at: datetime | None, started_at: datetime | None, completed_at: datetime, batch_size: int = 1
) -> dict[str, float | None]:
    """The usage a job records as it ends at `completed_at`:

    - `queue_seconds`: from when it was last queued to when its run started, or to its
      end if it never started (None for a job never queued, from before queued_at);
    - `gpu_seconds`: its run's time shared among the `batch_size` jobs of the pipeline
      call it ran in; 0 for a job that never started.

    Only the run that ended the job counts: an attempt retried after a failure of the
    machine (a lost worker, a full disk) is the service's cost, not the user's."""
    queue_end = started_at or completed_at
    queue_seconds = None if queued_at is None else max((queue_end - queued_at).total_seconds(), 0.0)
    gpu_seconds = 0.0
    if started_at is not None:
        gpu_seconds = max((completed_at - started_at).total_seconds(), 0.0) / max(batch_size, 1)
    return {"queue_seconds": queue_seconds, "gpu_seconds": gpu_seconds}


def held_usage(task: Task, *, completed_at: datetime, batch_size: int = 1) -> dict[str, float | None]:
    """usage_fields of a job a worker holds, from the worker's copy of it."""
    return usage_fields(
        queued_at=task.queued_at, started_at=task.started_at, completed_at=completed_at, batch_size=batch_size
    )


# Reads -------------------------------------------------------------------------------


# A range of days is at most this long: a year of days, each one row of by_day.
MAX_RANGE_DAYS = 366


@dataclass
class Figures:
    jobs: int = 0
    succeeded: int = 0
    failed: int = 0
    gpu_seconds: float = 0.0

    def add(self, row: dict[str, Any]) -> None:
        self.jobs += row["jobs"]
        self.succeeded += row["succeeded"]
        self.failed += row["failed"]
        self.gpu_seconds += row["gpu_seconds"] or 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "gpu_seconds": round(self.gpu_seconds, 3),
        }


@dataclass
class Usage:
    first_day: date
    last_day: date
    total: Figures = field(default_factory=Figures)
    by_task_type: dict[str, Figures] = field(default_factory=dict)
    by_day: dict[date, Figures] = field(default_factory=dict)

    def add(self, row: dict[str, Any]) -> None:
        """A row of one day and task type: jobs, succeeded, failed, gpu_seconds."""
        self.total.add(row)
        self.by_task_type.setdefault(row["task_type"], Figures()).add(row)
        self.by_day.setdefault(row["day"], Figures()).add(row)

    def as_dict(self) -> dict[str, Any]:
        days = (self.last_day - self.first_day).days + 1
        every_day = [self.first_day + timedelta(days=offset) for offset in range(days)]
        return {
            "from": self.first_day.isoformat(),
            "to": self.last_day.isoformat(),
            **self.total.as_dict(),
            "by_task_type": [
                {"task_type": task_type, **figures.as_dict()}
                for task_type, figures in sorted(self.by_task_type.items())
            ],
            "by_day": [{"date": day.isoformat(), **self.by_day.get(day, Figures()).as_dict()} for day in every_day],
        }


def days_bounds(first_day: date, last_day: date) -> tuple[datetime, datetime]:
    """From the start of the first day to the end of the last (TIME_ZONE days: UTC).
    Raises OverflowError past the last day a datetime holds."""
    start = datetime.combine(first_day, time.min, tzinfo=timezone.get_current_timezone())
    end = datetime.combine(last_day, time.min, tzinfo=timezone.get_current_timezone()) + timedelta(days=1)
    return start, end


# A job's outcome as the sums count it: every ending is a job; FAILURE and TIMEOUT failed.
# Counted of a column, not "*": Django counts "*" only without a filter.
ENDED_FIGURES = {
    "jobs": Count("state"),
    "succeeded": Count("state", filter=Q(state=TaskState.SUCCESS)),
    "failed": Count("state", filter=Q(state__in=_FAILED_STATES)),
    "gpu_seconds": Sum("gpu_seconds"),
}
_SUMMED = {name: Sum(name) for name in ("jobs", "succeeded", "failed", "gpu_seconds")}


def rolled_up_through() -> date | None:
    """The last day UsageDay holds; every day before it is there too."""
    return UsageRolledDay.objects.aggregate(last=Max("day"))["last"]


def _split(first_day: date, last_day: date) -> tuple[tuple[date, date] | None, tuple[date, date] | None]:
    """The range's days rolled up, and those after, each None when there are none."""
    rolled = rolled_up_through()
    if rolled is None or rolled < first_day:
        return None, (first_day, last_day)
    if rolled >= last_day:
        return (first_day, last_day), None
    return (first_day, rolled), (rolled + timedelta(days=1), last_day)


def _ended_between(days: tuple[date, date]) -> QuerySet[Task]:
    start, end = days_bounds(*days)
    return Task.objects.filter(completed_at__gte=start, completed_at__lt=end)


def usage_of(*, owner_id: Any, first_day: date, last_day: date) -> Usage:
    """One user's jobs that ended from the first day to the last, both included: in all,
    per task type and per day. `jobs` counts every ending (cancelled ones too),
    `failed` FAILURE and TIMEOUT."""
    usage = Usage(first_day=first_day, last_day=last_day)
    rolled, live = _split(first_day, last_day)
    if rolled is not None:
        days = UsageDay.objects.filter(owner_id=owner_id, day__range=rolled)
        for row in days.values("day", "task_type", "jobs", "succeeded", "failed", "gpu_seconds"):
            usage.add(row)
    if live is not None:
        ended = _ended_between(live).filter(owner_id=owner_id).annotate(day=TruncDate("completed_at"))
        for row in ended.values("day", "task_type").annotate(**ENDED_FIGURES).order_by():
            usage.add(row)
    return usage


def usage_by_user(*, first_day: date, last_day: date, limit: int = 200) -> list[dict[str, Any]]:
    """Every user's jobs that ended in the range, most GPU seconds first (the admin's
    usage page): owner_id, username, jobs, succeeded, failed, gpu_seconds."""
    rolled, live = _split(first_day, last_day)
    parts: list[Iterable[dict[str, Any]]] = []
    if rolled is not None:
        parts.append(UsageDay.objects.filter(day__range=rolled).values("owner_id").annotate(**_SUMMED).order_by())
    if live is not None:
        parts.append(_ended_between(live).values("owner_id").annotate(**ENDED_FIGURES).order_by())
    by_owner: dict[Any, Figures] = {}
    for part in parts:
        for row in part:
            by_owner.setdefault(row["owner_id"], Figures()).add(row)
    ranked = sorted(by_owner.items(), key=lambda item: (-item[1].gpu_seconds, -item[1].jobs, item[0]))[:limit]
    names = dict(get_user_model().objects.filter(pk__in=[owner for owner, _ in ranked]).values_list("pk", "username"))
    return [{"owner_id": owner, "username": names.get(owner, ""), **figures.as_dict()} for owner, figures in ranked]
