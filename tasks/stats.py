"""Stats and the dashboard's figures: a few aggregate queries over indexed columns
(submitted_at, completed_at, state), so a day of a million-row table costs
milliseconds, not a scan."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db import connection
from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Q, QuerySet
from django.db.models.functions import TruncHour
from django.utils import timezone

from tasks.models import ACTIVE_STATES, TERMINAL_STATES, UNFINISHED_STATES, Task, TaskState
from tasks.selectors import tasks_queued_by_type

_RUN_TIME = ExpressionWrapper(F("completed_at") - F("started_at"), output_field=DurationField())
_FAILED_STATES = (TaskState.FAILURE, TaskState.TIMEOUT)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())
    return start, start + timedelta(days=1)


def _milliseconds(duration: timedelta | None) -> int | None:
    return None if duration is None else round(duration.total_seconds() * 1000)


def stats_tasks(*, day: date) -> dict[str, Any]:
    """The day's jobs (by submit time): counts by outcome, retried, mean run time."""
    start, end = day_bounds(day)
    totals = Task.objects.filter(submitted_at__gte=start, submitted_at__lt=end).aggregate(
        total=Count("pk"),
        pending=Count("pk", filter=Q(state=TaskState.PENDING)),
        running=Count("pk", filter=Q(state__in=ACTIVE_STATES)),
        successful=Count("pk", filter=Q(state=TaskState.SUCCESS)),
        failed=Count("pk", filter=Q(state__in=_FAILED_STATES)),
        revoked=Count("pk", filter=Q(state=TaskState.REVOKED)),
        retried=Count("pk", filter=Q(attempts__gt=1)),
        average_run_time=Avg(_RUN_TIME, filter=Q(state=TaskState.SUCCESS)),
    )
    hours = stats_hourly(day=day)
    servers = server_outcomes(Task.objects.filter(completed_at__gte=start, completed_at__lt=end, server__isnull=False))
    return {
        "date": day.isoformat(),
        "total_tasks": totals["total"],
        "pending_tasks": totals["pending"],
        "running_tasks": totals["running"],
        "successful_tasks": totals["successful"],
        "failed_tasks": totals["failed"],
        "revoked_tasks": totals["revoked"],
        "retried_tasks": totals["retried"],
        "average_processing_time_ms": _milliseconds(totals["average_run_time"]),
        "server_count": len(servers),
        "top_servers": [
            {key: row[key] for key in ("server_id", "name", "tasks_processed", "success_rate")}
            for row in servers[:TOP_SERVERS]
        ],
        "hourly_trend": [{"hour": row["hour"], "tasks": row["created"]} for row in hours],
    }


TOP_SERVERS = 5


def server_outcomes(finished: QuerySet[Task]) -> list[dict[str, Any]]:
    """Per server, the jobs it finished (SUCCESS, FAILURE, TIMEOUT; a cancelled job says
    nothing of the server), busiest first."""
    rows = (
        finished.filter(state__in=[TaskState.SUCCESS, *_FAILED_STATES])
        .values("server_id", "server__name")
        .annotate(
            processed=Count("pk"),
            succeeded=Count("pk", filter=Q(state=TaskState.SUCCESS)),
            average_run_time=Avg(_RUN_TIME, filter=Q(state=TaskState.SUCCESS)),
        )
        .order_by("-processed", "server__name")
    )
    return [
        {
            "server_id": str(row["server_id"]),
            "name": row["server__name"],
            "tasks_processed": row["processed"],
            "success_count": row["succeeded"],
            "failure_count": row["processed"] - row["succeeded"],
            "success_rate": round(row["succeeded"] / row["processed"], 4),
            "average_processing_time_ms": _milliseconds(row["average_run_time"]),
        }
        for row in rows
    ]


def stats_hourly(*, day: date) -> list[dict[str, Any]]:
    """Per hour of the day: jobs created, completed (SUCCESS), failed (FAILURE or
    TIMEOUT), and the mean run time of those completed."""
    start, end = day_bounds(day)
    hours: dict[int, dict[str, Any]] = {
        hour: {"hour": hour, "created": 0, "completed": 0, "failed": 0, "average_time_ms": None} for hour in range(24)
    }
    created = (
        Task.objects.filter(submitted_at__gte=start, submitted_at__lt=end)
        .annotate(hour=TruncHour("submitted_at"))
        .values("hour")
        .annotate(count=Count("pk"))
        .order_by()
    )
    for row in created:
        hours[timezone.localtime(row["hour"]).hour]["created"] = row["count"]
    finished = (
        Task.objects.filter(completed_at__gte=start, completed_at__lt=end)
        .annotate(hour=TruncHour("completed_at"))
        .values("hour")
        .annotate(
            completed=Count("pk", filter=Q(state=TaskState.SUCCESS)),
            failed=Count("pk", filter=Q(state__in=_FAILED_STATES)),
            average_time=Avg(_RUN_TIME, filter=Q(state=TaskState.SUCCESS)),
        )
        .order_by()
    )
    for row in finished:
        hour = hours[timezone.localtime(row["hour"]).hour]
        hour.update(
            completed=row["completed"], failed=row["failed"], average_time_ms=_milliseconds(row["average_time"])
        )
    return list(hours.values())


# Dashboard ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HourCounts:
    hour: datetime
    created: int
    completed: int
    failed: int


def dashboard_hours(*, now: datetime, hours: int = 24) -> list[HourCounts]:
    """The last `hours` whole hours up to now, oldest first."""
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    counts: dict[datetime, dict[str, int]] = defaultdict(lambda: {"created": 0, "completed": 0, "failed": 0})
    for row in (
        Task.objects.filter(submitted_at__gte=first)
        .annotate(hour=TruncHour("submitted_at"))
        .values("hour")
        .annotate(count=Count("pk"))
        .order_by()
    ):
        counts[row["hour"]]["created"] = row["count"]
    for row in (
        Task.objects.filter(completed_at__gte=first)
        .annotate(hour=TruncHour("completed_at"))
        .values("hour")
        .annotate(
            completed=Count("pk", filter=Q(state=TaskState.SUCCESS)),
            failed=Count("pk", filter=Q(state__in=_FAILED_STATES)),
        )
        .order_by()
    ):
        counts[row["hour"]].update(completed=row["completed"], failed=row["failed"])
    slots = [first + timedelta(hours=index) for index in range(hours)]
    return [HourCounts(hour=slot, **counts[slot]) for slot in slots]


def tasks_by_state(*, finished_since: datetime) -> dict[str, int]:
    """Unfinished jobs now, and jobs finished since a time, by state. Counting every
    job ever finished would read the whole table for a figure nobody needs."""
    unfinished = Task.objects.filter(state__in=UNFINISHED_STATES)
    finished = Task.objects.filter(state__in=TERMINAL_STATES, completed_at__gte=finished_since)
    counts = dict(unfinished.values_list("state").annotate(count=Count("pk")).order_by())
    counts.update(finished.values_list("state").annotate(count=Count("pk")).order_by())
    return {state: counts.get(state, 0) for state in TaskState.values}


def success_rate(*, since: datetime) -> float | None:
    """Successes over finished jobs (cancelled ones aside) since a time."""
    finished = Task.objects.filter(completed_at__gte=since).aggregate(
        success=Count("pk", filter=Q(state=TaskState.SUCCESS)),
        failed=Count("pk", filter=Q(state__in=_FAILED_STATES)),
    )
    total = finished["success"] + finished["failed"]
    return finished["success"] / total if total else None


def duration_percentiles(*, since: datetime) -> dict[str, dict[str, float]]:
    """p50 and p95 run time (seconds) of successful jobs per task type since a time."""
    succeeded = Task.objects.filter(state=TaskState.SUCCESS, completed_at__gte=since, started_at__isnull=False)
    if connection.vendor == "postgresql":
        return _percentiles_in_postgres(succeeded)
    runs: dict[str, list[float]] = defaultdict(list)
    for task_type, run_time in succeeded.annotate(run_time=_RUN_TIME).values_list("task_type", "run_time"):
        runs[task_type].append(run_time.total_seconds())
    return {
        task_type: {"p50": _percentile(values, 0.5), "p95": _percentile(values, 0.95)}
        for task_type, values in runs.items()
    }


def _percentiles_in_postgres(rows: QuerySet[Task]) -> dict[str, dict[str, float]]:
    query, params = rows.values("task_type", "started_at", "completed_at").query.sql_with_params()
    sql = (
        "SELECT task_type, percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP "
        "(ORDER BY EXTRACT(EPOCH FROM completed_at - started_at)) "
        f"FROM ({query}) AS runs GROUP BY task_type"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {task_type: {"p50": float(p50), "p95": float(p95)} for task_type, (p50, p95) in cursor.fetchall()}


def _percentile(values: list[float], fraction: float) -> float:
    """Linear interpolation between closest ranks, as Postgres' percentile_cont."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def queue_summary(*, now: datetime) -> dict[str, Any]:
    waiting = Task.objects.filter(state=TaskState.PENDING)
    # A job in a retry's backoff is queued from the end of the backoff on.
    oldest = waiting.filter(queued_at__lte=now).order_by("queued_at").values("pk", "task_type", "queued_at").first()
    return {
        "depth": waiting.count(),
        "by_type": tasks_queued_by_type(),
        "running": Task.objects.filter(state__in=ACTIVE_STATES).count(),
        "oldest_waiting_seconds": (now - oldest["queued_at"]).total_seconds() if oldest else None,
        "oldest_waiting_task": oldest,
    }
