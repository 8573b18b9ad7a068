"""Deleting old finished jobs and their files, in small batches.

A service (it writes), kept apart from tasks.services because it works on many rows:
each batch is its own short transaction, so the table is never locked for long and a
running system keeps claiming and finishing jobs meanwhile.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q

from backserv_site.errors import InvalidInput
from tasks.models import TERMINAL_STATES, Task
from tasks.storage import task_files_delete, task_files_size

logger = logging.getLogger(__name__)

_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> timedelta:
    """ "30d", "12h", "90m", "45s", "2w" as a timedelta."""
    match = _AGE.match(text)
    if not match:
        raise InvalidInput(f"Expected an age like 30d, 12h or 90m, got {text!r}.", fields={"older_than": ["Bad age."]})
    return timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])


@dataclass
class CleanupReport:
    tasks: int = 0
    bytes_freed: int = 0
    batches: int = 0


def tasks_cleanup(
    *,
    finished_before: datetime,
    states: Iterable[str] | None = None,
    batch_size: int = 500,
    max_batches: int | None = None,
    dry_run: bool = False,
) -> CleanupReport:
    """Delete finished jobs (SUCCESS, FAILURE, TIMEOUT, REVOKED, or the given subset)
    that ended before a time, with their events and files. Unfinished jobs are never
    touched. `max_batches`: stop after that many (the sweep's share), the rest is left
    for later. A dry run counts what would go and deletes nothing."""
    chosen = set(states) if states else set(TERMINAL_STATES)
    unfinished = chosen - set(TERMINAL_STATES)
    if unfinished:
        raise InvalidInput(
            f"Only finished jobs can be cleaned up; not {', '.join(sorted(unfinished))}.",
            fields={"state": ["Must be SUCCESS, FAILURE, TIMEOUT or REVOKED."]},
        )
    old = Task.objects.filter(state__in=chosen).filter(
        Q(completed_at__lt=finished_before) | Q(completed_at__isnull=True, submitted_at__lt=finished_before)
    )
    report = CleanupReport()
    if dry_run:
        for task_id in old.values_list("pk", flat=True).iterator(chunk_size=batch_size):
            report.tasks += 1
            report.bytes_freed += task_files_size(task_id=task_id)
        return report
    while max_batches is None or report.batches < max_batches:
        batch = list(old.order_by().values_list("pk", flat=True)[:batch_size])
        if not batch:
            return report
        with transaction.atomic():
            # The state is checked again: a job retried since the SELECT is not old.
            deleted_ids = list(old.filter(pk__in=batch).values_list("pk", flat=True))
            Task.objects.filter(pk__in=deleted_ids).delete()
        # Files after the commit: a failed delete must not leave a job without files.
        for task_id in deleted_ids:
            report.bytes_freed += task_files_delete(task_id=task_id)
        report.tasks += len(deleted_ids)
        report.batches += 1
        logger.info("cleanup batch", extra={"deleted": len(deleted_ids), "total_deleted": report.tasks})
    return report
