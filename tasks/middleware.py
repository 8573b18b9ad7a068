"""Dramatiq middleware. Loaded while Django's apps are still being set up, so nothing
here imports models at module level."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dramatiq

if TYPE_CHECKING:
    from tasks.sweeper import Sweeper


class SweeperMiddleware(dramatiq.Middleware):
    """Runs the sweeps inside every worker process, so a fleet needs no cron."""

    def __init__(self) -> None:
        # By worker: a process normally runs one, but tests run several side by side.
        self.sweepers: dict[int, Sweeper] = {}

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        from tasks.sweeper import Sweeper

        sweeper = self.sweepers[id(worker)] = Sweeper()
        sweeper.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        sweeper = self.sweepers.pop(id(worker), None)
        if sweeper is not None:
            sweeper.stop()
