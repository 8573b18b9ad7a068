"""Worker threads keep their database connection; the API's threads keep their own rule."""

from __future__ import annotations

import threading
from typing import Any

from django.db import connection

from tasks.middleware import WorkerConnectionsMiddleware


def test_a_worker_thread_keeps_its_connection_and_other_threads_are_untouched(settings: Any) -> None:
    settings.BACKSERV = {**settings.BACKSERV, "WORKER_CONN_MAX_AGE": 123}
    before = connection.settings_dict["CONN_MAX_AGE"]
    seen: dict[str, Any] = {}

    def worker_thread() -> None:
        WorkerConnectionsMiddleware().after_worker_thread_boot(broker=None, thread=None)
        seen["worker"] = connection.settings_dict["CONN_MAX_AGE"]

    def api_thread() -> None:
        seen["api"] = connection.settings_dict["CONN_MAX_AGE"]

    for target in (worker_thread, api_thread):
        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
    assert seen == {"worker": 123, "api": before}
    assert connection.settings_dict["CONN_MAX_AGE"] == before
