"""Dramatiq middleware. Loaded while Django's apps are still being set up, so nothing
here imports models at module level."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import dramatiq
from django.conf import settings

if TYPE_CHECKING:
    from servers.presence import ServerPresence


def _configured_batch_size() -> int:
    return settings.GENERATION["DYNAMIC_BATCH_SIZE"] or 1


# The jobs one worker thread runs in one pipeline call. The generation app, which knows
# the device an "auto" size depends on, installs its own (generation.apps).
worker_batch_size: Callable[[], int] = _configured_batch_size

# The task types a worker of this process can run, which it offers when it registers.
# The generation app, which knows the pipelines' libraries and models, installs its own.
worker_capabilities: Callable[[], list[str]] = list


def worker_runs_jobs(worker: dramatiq.Worker) -> bool:
    """Whether a worker takes generation jobs: it consumes every queue, or the shared
    one (or a server's own). One started for webhooks alone (`--queues webhooks`) runs
    none: it must neither offer itself as a GPU server nor load models."""
    shared = settings.BACKSERV["QUEUE_NAME"]
    queues = worker.consumer_whitelist
    return not queues or any(queue == shared or queue.startswith(f"{shared}.") for queue in queues)


class ServerPresenceMiddleware(dramatiq.Middleware):
    """Makes each worker process a registered server (when SERVERS["REGISTER_WORKERS"]):
    registered at boot with its own queue, heartbeating, offline at a clean shutdown.

    The worker consumes its own queue and the queues declared at boot (the shared one).
    Pinning that list matters: routing in this process (sweeps) declares other servers'
    queues on the broker, and a worker without a list would start consuming them.
    """

    def __init__(self) -> None:
        self.presences: dict[int, ServerPresence] = {}

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if not settings.SERVERS["REGISTER_WORKERS"] or not worker_runs_jobs(worker):
            return
        from servers.presence import ServerPresence, worker_server_name

        # Each thread runs up to a batch of jobs in one pipeline call: holding fewer
        # would keep batches from forming on a fleet's workers. The backlog's batches
        # wait in the worker's queue, so a thread goes from one batch to the next
        # without waiting for a routing pass.
        batches = 1 + settings.SERVERS["WORKER_BACKLOG"]
        slots = worker.worker_threads * worker_batch_size() * batches
        presence = ServerPresence(name=worker_server_name(), capabilities=worker_capabilities(), max_concurrent=slots)
        server = presence.start()
        if not worker.consumer_whitelist:
            worker.consumer_whitelist = set(broker.get_declared_queues())
        worker.consumer_whitelist.add(server.queue_name)
        broker.declare_queue(server.queue_name)
        self.presences[id(worker)] = presence

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # After: the worker threads have finished their jobs, so only unstarted ones
        # are left to route elsewhere.
        presence = self.presences.pop(id(worker), None)
        if presence is not None:
            presence.stop()
