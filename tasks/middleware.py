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
        self.sweeper: Sweeper | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        from tasks.sweeper import Sweeper

        self.sweeper = Sweeper()
        self.sweeper.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.sweeper is not None:
            self.sweeper.stop()
            self.sweeper = None
