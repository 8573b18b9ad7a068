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
        if not settings.SERVERS["REGISTER_WORKERS"]:
            return
        from servers.presence import ServerPresence, worker_capabilities, worker_server_name

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
