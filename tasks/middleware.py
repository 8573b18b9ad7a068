"""Dramatiq middleware. Loaded while Django's apps are still being set up, so nothing
here imports models at module level."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dramatiq

if TYPE_CHECKING:
    from tasks.sweeper import Sweeper


class WorkerConnectionsMiddleware(dramatiq.Middleware):
    """Each worker thread keeps its database connection for WORKER_CONN_MAX_AGE seconds
    (django_dramatiq's DbConnectionsMiddleware checks the age after every message), so
    a job does not pay a new connection. Only the worker threads' own connections: the
    API's request threads keep DATABASE_CONN_MAX_AGE. Not with a database pool, which
    does the same for every thread."""

    def after_worker_thread_boot(self, broker: dramatiq.Broker, thread: Any) -> None:
        from django.conf import settings
        from django.db import connection

        from backserv_site.db import database_pooled

        if database_pooled():
            # The pool keeps connections warm already: after each message the thread
            # hands its connection back, and the next message takes one from there.
            return
        # Runs on the worker thread: this replaces only its connection's settings (the
        # dict is otherwise shared by every thread's connection).
        connection.settings_dict = {
            **connection.settings_dict,
            "CONN_MAX_AGE": settings.BACKSERV["WORKER_CONN_MAX_AGE"],
        }


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
