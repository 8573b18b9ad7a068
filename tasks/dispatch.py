"""Sending "run task X" messages. The message carries only the id: the worker claims
the row from the database, so a duplicate, late or lost message cannot run a job twice
or lose it (the sweep re-sends for jobs nobody claimed)."""

from __future__ import annotations

import logging
from uuid import UUID

from django.db import transaction

logger = logging.getLogger(__name__)


def dispatch_on_commit(*, task_id: UUID | str) -> None:
    # After commit: a worker must never receive an id whose row it cannot see yet.
    transaction.on_commit(lambda: dispatch_now(task_id=task_id))


def dispatch_now(*, task_id: UUID | str) -> bool:
    from generation.actors import run_task

    try:
        run_task.send(str(task_id))
    except Exception:
        # The job stays PENDING and the sweep sends again once the broker is back;
        # a submit must not fail because the broker is briefly away.
        logger.warning("could not send task %s to the broker; the sweep will retry", task_id, exc_info=True)
        from tasks.models import Task, TaskState

        Task.objects.filter(pk=task_id, state=TaskState.PENDING).update(dispatched_at=None)
        return False
    return True
