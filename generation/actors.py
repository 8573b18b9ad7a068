"""Dramatiq actors. Thin: take an id, hand it to the runner. Importing this module must
stay cheap (the API process imports it to send messages); the runner pulls in torch."""

from __future__ import annotations

import dramatiq
from django.conf import settings
from dramatiq.common import q_name
from dramatiq.middleware import CurrentMessage

from tasks.dispatch import Destination

# Dramatiq's own limit cannot interrupt a long C/CUDA call; deadlines are enforced by
# the step callback. This is only a backstop far beyond any real job.
_BACKSTOP_MS = 24 * 3600 * 1000


@dramatiq.actor(
    actor_name="run_task",
    queue_name=settings.BACKSERV["QUEUE_NAME"],
    time_limit=_BACKSTOP_MS,
    # Retries only matter for infrastructure errors (the database briefly away):
    # handling a message twice is harmless, the claim decides who runs.
    max_retries=3,
    min_backoff=1000,
    max_backoff=30000,
)
def run_task(task_id: str) -> None:
    from generation import worker_process

    message = CurrentMessage.get_current_message()
    # Copies of this message go to servers' own queues: claim from the queue it came on.
    queue_name = q_name(message.queue_name) if message is not None else None
    child = worker_process.active()
    if child is not None:
        # `serve` with a GPU: the job runs in its child process, this thread waits.
        child.execute(task_id, queue_name)
        return
    from generation.runner import execute_message

    execute_message(task_id, queue_name=queue_name)


def run_task_send(task_id: str, destination: Destination, delay_ms: int | None) -> None:
    """A job's "run task X" message to the local workers' queue it is routed to
    (installed as tasks.dispatch's sender for them by generation.apps)."""
    message = run_task.message(task_id)
    if message.queue_name != destination.queue_name:
        # The actor is declared on the shared queue; a server's own queue takes a copy.
        run_task.broker.declare_queue(destination.queue_name)
        message = message.copy(queue_name=destination.queue_name)
    run_task.broker.enqueue(message, delay=delay_ms)
