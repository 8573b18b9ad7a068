"""Dramatiq actors of the servers app. Thin: take an id, call a service."""

from __future__ import annotations

import dramatiq
from django.conf import settings

from tasks.dispatch import Destination


@dramatiq.actor(
    actor_name="forward_task",
    # An HTTP call, not GPU work: on the queue of outbound calls (with the webhooks), so
    # a forward never waits behind a GPU job nor holds a GPU worker's thread.
    queue_name=settings.BACKSERV["WEBHOOK_QUEUE"],
    max_retries=3,
    min_backoff=1000,
    max_backoff=30000,
)
def forward_task(task_id: str) -> None:
    from servers.remote import task_forward

    task_forward(task_id=task_id)


def forward_task_send(task_id: str, destination: Destination, delay_ms: int | None) -> None:
    """A job routed to a remote server, to the forwarder (installed as tasks.dispatch's
    sender for remote destinations by servers.apps)."""
    forward_task.send_with_options(args=(task_id,), delay=delay_ms)
