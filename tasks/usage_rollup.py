"""Rolling closed days up into UsageDay, run by the sweep: the usage reads then sum a few
rows per day instead of every job of it (tasks.usage).

A service (it writes), apart from tasks.services as tasks.retention is. Days are rolled
up in order, one a sweep, each once: the first day a job ended on that is not rolled up
yet, once it has been over for CLOSED_AFTER (days without jobs in between are passed
over; they have nothing to hold). A day's figures are then fixed: a job retried later
counts again on the day it ends again, and jobs deleted (TASK_RETENTION_DAYS, a user's
delete) still count on their days.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Min
from django.utils import timezone

from tasks.models import Task, UsageDay, UsageRolledDay
from tasks.usage import ENDED_FIGURES, days_bounds, rolled_up_through

logger = logging.getLogger(__name__)

# A day is rolled up once it has been over this long: a job ends at its worker's clock,
# which may run a little behind ours.
CLOSED_AFTER = timedelta(hours=1)


def usage_day_roll_up(*, now: datetime | None = None) -> int:
    """Roll up the next day due, if one is: returns the days rolled up (0 or 1)."""
    now = now or timezone.now()
    rolled = rolled_up_through()
    ended = Task.objects.filter(completed_at__isnull=False)
    if rolled is not None:
        ended = ended.filter(completed_at__gte=days_bounds(rolled, rolled)[1])
    first = ended.aggregate(first=Min("completed_at"))["first"]
    if first is None:
        return 0
    day = timezone.localdate(first)
    start, end = days_bounds(day, day)
    if now < end + CLOSED_AFTER:
        return 0
    rows = (
        Task.objects.filter(completed_at__gte=start, completed_at__lt=end)
        .values("owner_id", "task_type")
        .annotate(**ENDED_FIGURES)
        .order_by()
    )
    try:
        with transaction.atomic():
            # First, so a sweep rolling the same day up at once fails here and adds nothing.
            UsageRolledDay.objects.create(day=day)
            UsageDay.objects.bulk_create(
                UsageDay(
                    owner_id=row["owner_id"],
                    day=day,
                    task_type=row["task_type"],
                    jobs=row["jobs"],
                    succeeded=row["succeeded"],
                    failed=row["failed"],
                    gpu_seconds=row["gpu_seconds"] or 0.0,
                )
                for row in rows
            )
    except IntegrityError:
        return 0
    logger.info("usage rolled up", extra={"day": day.isoformat()})
    return 1
