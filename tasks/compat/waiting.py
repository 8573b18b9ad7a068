"""Waiting for a job to finish inside a request (the studio's synchronous routes, the
Back.Serv cancel), on the same "job changed" notices as the sync submits."""

from __future__ import annotations

from uuid import UUID

from tasks.models import Task
from tasks.waiting import wait_until_finished_blocking


def task_wait_finished(*, task_id: UUID | str, timeout: float) -> Task:
    """The job once it is terminal, or as it is when `timeout` seconds have passed."""
    if timeout > 0:
        wait_until_finished_blocking(task_id, timeout)
    return Task.objects.get(pk=task_id)
