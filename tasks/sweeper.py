"""The periodic sweeps (expired leases, queue deadlines, lost messages, retention, usage
roll-ups). Every worker process and the embedded server run them on a side thread; the
sweeps are conditional UPDATEs (or, for the roll-ups, guarded by a unique key), so any
number of processes may run them at once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import connection

from backserv_site.db import connection_work
from tasks.retention import retention_sweep
from tasks.services import tasks_redispatch_stale, tasks_requeue_expired, tasks_time_out_queued
from tasks.usage_rollup import usage_day_roll_up
from tasks.webhooks import webhooks_redispatch_due

logger = logging.getLogger(__name__)


# The sweeps of the apps above this one (the servers app checks its servers), installed
# in their AppConfig.ready(): each returns its counts.
_installed_sweeps: list[Callable[[], dict[str, int]]] = []


def install_sweep(sweep: Callable[[], dict[str, int]]) -> None:
    if sweep not in _installed_sweeps:
        _installed_sweeps.append(sweep)


def sweep_once() -> dict[str, int]:
    counts = {
        "requeued": tasks_requeue_expired(),
        "timed_out": tasks_time_out_queued(),
        "redispatched": tasks_redispatch_stale(),
        "webhooks_redispatched": webhooks_redispatch_due(),
        **retention_sweep(),
        "usage_days_rolled_up": usage_day_roll_up(),
    }
    for sweep in _installed_sweeps:
        counts.update(sweep())
    return counts


class Sweeper:
    def __init__(self, interval: float | None = None):
        self.interval = interval if interval is not None else settings.BACKSERV["SWEEP_INTERVAL_SECONDS"]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="backserv-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                with connection_work():
                    try:
                        counts = sweep_once()
                    except Exception:
                        logger.exception("sweep failed; trying again in %.0fs", self.interval)
                        continue
                if any(counts.values()):
                    logger.info("sweep: %s", counts)
        finally:
            connection.close()
