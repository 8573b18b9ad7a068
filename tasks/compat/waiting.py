"""Waiting for a job to finish inside a request (the studio's synchronous routes, the
Back.Serv cancel). Polls the database: kept in this one function so an event-based
wait can replace it without touching the views."""

from __future__ import annotations

import time
from uuid import UUID

from tasks.models import Task

POLL_INTERVAL_SECONDS = 0.1


def task_wait_finished(*, task_id: UUID | str, timeout: float) -> Task:
    """The job once it is terminal, or as it is when `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        task = Task.objects.get(pk=task_id)
        remaining = deadline - time.monotonic()
        if task.is_terminal or remaining <= 0:
            return task
        time.sleep(min(POLL_INTERVAL_SECONDS, remaining))
