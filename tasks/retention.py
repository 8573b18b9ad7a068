"""Result retention, run by the sweep: the output files of jobs that finished more than
RESULT_RETENTION_DAYS ago are deleted (the job stays, showing `result_expired` and no
URLs), and with TASK_RETENTION_DAYS the jobs themselves (tasks.cleanup, as the
cleanup_tasks command does by hand).

A service (it writes), apart from tasks.services as tasks.cleanup is: it works on many
rows, a bounded batch per sweep, so a sweep never holds the table, or its thread, long
however much is due at once (the first sweep after turning retention on, say).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from tasks.cleanup import tasks_cleanup
from tasks.models import Task, TaskState
from tasks.storage import task_files_delete, task_files_left
from tasks.usage import days_bounds, rolled_up_through

logger = logging.getLogger(__name__)

# Jobs a sweep handles at most, for each of the two.
RETENTION_BATCH_SIZE = 100


def result_without_files(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """A result whose files are gone: each output keeps what it was (type, size, width,
    height) but names no file and no URL. A remote server's own result (no `outputs`)
    stays as it reported it: its files are not ours."""
    if not result or "outputs" not in result:
        return result
    outputs = [{key: value for key, value in item.items() if key not in ("path", "url")} for item in result["outputs"]]
    return {**result, "outputs": outputs, **({"url": None} if "url" in result else {})}


def task_results_expire(*, finished_before: datetime, batch_size: int = RETENTION_BATCH_SIZE) -> int:
    """Delete the files of up to `batch_size` successful jobs that finished before a
    time, oldest first, and mark them expired; returns how many. A job whose file delete
    fails (a file is left) is not marked, so the next sweep tries it again."""
    due = list(
        Task.objects.filter(state=TaskState.SUCCESS, result_expired_at__isnull=True, completed_at__lt=finished_before)
        .order_by("completed_at")
        .only("pk", "result")[:batch_size]
    )
    expired = []
    for task in due:
        # Files first, the mark after: a sweep stopped between the two leaves a job that
        # the next one finds again, never a job marked expired whose files remain.
        try:
            task_files_delete(task_id=task.pk)
            left = task_files_left(task_id=task.pk)
        except Exception:
            # Any storage's error: the other jobs of the batch still go.
            logger.exception("could not delete the files of task %s", task.pk)
            continue
        if left:
            logger.warning("files of task %s are left; trying again at the next sweep", task.pk)
            continue
        expired.append(task)
    now = timezone.now()
    for task in expired:
        task.result, task.result_expired_at, task.updated_at = result_without_files(task.result), now, now
    # SUCCESS is final, so a job can only have been deleted meanwhile: it updates nothing.
    Task.objects.bulk_update(expired, ["result", "result_expired_at", "updated_at"])
    if expired:
        logger.info("results expired", extra={"expired": len(expired)})
    return len(expired)


def retention_sweep(*, now: datetime | None = None, batch_size: int = RETENTION_BATCH_SIZE) -> dict[str, int]:
    """One sweep's share of retention: a batch of results to expire and a batch of jobs
    to delete, as the settings ask (0 days: kept forever), of the days whose usage is
    rolled up."""
    now = now or timezone.now()
    result_days, task_days = settings.BACKSERV["RESULT_RETENTION_DAYS"], settings.BACKSERV["TASK_RETENTION_DAYS"]
    counts = {"results_expired": 0, "tasks_deleted": 0}
    if result_days > 0:
        counts["results_expired"] = task_results_expire(
            finished_before=now - timedelta(days=result_days), batch_size=batch_size
        )
    rolled = rolled_up_through()
    if task_days > 0 and rolled is not None:
        # Only jobs whose day's usage is summed up (tasks.usage_rollup): deleting them
        # before would lose it.
        cutoff = min(now - timedelta(days=task_days), days_bounds(rolled, rolled)[1])
        report = tasks_cleanup(finished_before=cutoff, batch_size=batch_size, max_batches=1)
        counts["tasks_deleted"] = report.tasks
    return counts
