"""Sending "run task X" messages. The message carries only the id: the worker claims
the row from the database, so a duplicate, late or lost message cannot run a job twice
or lose it (the sweep re-sends for jobs nobody claimed).

A job's message goes to its route's queue: a registered worker's own queue, the shared
queue (embedded mode), or, for a job routed to a remote GPU server, the forwarding
actor's queue."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from uuid import UUID

from django.db import transaction

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Destination:
    queue_name: str
    remote: bool = False


def dispatch_on_commit(
    *, task_id: UUID | str, destination: Destination | None = None, delay_seconds: float = 0.0
) -> None:
    # After commit: a worker must never receive an id whose row it cannot see yet.
    transaction.on_commit(lambda: dispatch_now(task_id=task_id, destination=destination, delay_seconds=delay_seconds))


def dispatch_now(*, task_id: UUID | str, destination: Destination | None = None, delay_seconds: float = 0.0) -> bool:
    """Send the job's message, delayed by `delay_seconds` (a retry's backoff) when
    given; without a known destination, route the job first (it may be waiting for a
    server, or its server may have gone)."""
    if destination is None:
        from servers.routing import task_destination

        destination = task_destination(task_id=task_id)
        if destination is None:
            return False
    try:
        _send(task_id=str(task_id), destination=destination, delay_ms=round(delay_seconds * 1000) or None)
    except Exception:
        # The job stays PENDING and the sweep sends again once the broker is back;
        # a submit must not fail because the broker is briefly away.
        logger.warning("could not send task %s to the broker; the sweep will retry", task_id, exc_info=True)
        from tasks.models import Task, TaskState

        Task.objects.filter(pk=task_id, state=TaskState.PENDING).update(dispatched_at=None)
        return False
    return True


def _send(*, task_id: str, destination: Destination, delay_ms: int | None) -> None:
    if destination.remote:
        from servers.actors import forward_task

        forward_task.send_with_options(args=(task_id,), delay=delay_ms)
        return
    from generation.actors import run_task

    message = run_task.message(task_id)
    if message.queue_name != destination.queue_name:
        # The actor is declared on the shared queue; a server's own queue takes a copy.
        run_task.broker.declare_queue(destination.queue_name)
        message = message.copy(queue_name=destination.queue_name)
    run_task.broker.enqueue(message, delay=delay_ms)
