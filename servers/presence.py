"""A worker process of ours as a registered server: it registers at start, heartbeats
from a side thread, and goes offline when it stops cleanly."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from backserv_site.db import connection_work
from backserv_site.errors import StateConflict
from servers.models import Server
from servers.services import server_go_offline, server_heartbeat, server_register_worker
from tasks.models import ACTIVE_STATES, Task

logger = logging.getLogger(__name__)


def worker_server_name() -> str:
    """BACKSERV_NODE_NAME, else the host and the GPU this process was given."""
    if settings.BACKSERV["NODE_NAME"]:
        return settings.BACKSERV["NODE_NAME"]
    host = socket.gethostname()
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return f"{host}-gpu{gpu}" if gpu else host


def worker_metrics() -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    with contextlib.suppress(OSError):
        metrics["cpu"] = round(min(100.0, os.getloadavg()[0] / (os.cpu_count() or 1) * 100), 1)
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        total, available = int(info["MemTotal"].split()[0]), int(info["MemAvailable"].split()[0])
        metrics["memory"] = round((total - available) / total * 100, 1)
    except (OSError, KeyError, ValueError, ZeroDivisionError):
        pass
    torch = sys.modules.get("torch")  # only once a pipeline loaded it: never import it here
    # While the model preload is still importing torch the module is only half there;
    # the next heartbeat reports the GPU.
    with contextlib.suppress(AttributeError):
        if torch is not None and torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info()
            metrics["gpu"] = round((total - free) / total * 100, 1)
    return metrics


class ServerPresence:
    def __init__(self, *, name: str, capabilities: list[str], max_concurrent: int, interval: float | None = None):
        self.name = name
        self.capabilities = capabilities
        self.max_concurrent = max_concurrent
        self.interval = interval if interval is not None else settings.SERVERS["HEARTBEAT_INTERVAL_SECONDS"]
        self.server: Server | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{name}", daemon=True)

    def start(self) -> Server:
        self.server = self._register()
        self._thread.start()
        return self.server

    def stop(self, *, offline: bool = True) -> None:
        """Stop heartbeating; `offline` marks the server offline (a clean shutdown).
        Without it the server just falls silent, as if its machine died."""
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
        if offline and self.server is not None:
            server_go_offline(server=self.server)
            logger.info("server %s offline", self.name)

    def _register(self) -> Server:
        return server_register_worker(
            name=self.name, capabilities=self.capabilities, max_concurrent=self.max_concurrent
        )

    def beat(self) -> None:
        assert self.server is not None
        active = Task.objects.filter(server=self.server, state__in=ACTIVE_STATES).count()
        try:
            self.server = server_heartbeat(server=self.server, active_tasks=active, metrics=worker_metrics())
        except StateConflict:
            # Unregistered while still running: a running worker is a server, so it
            # comes back. Operators drain a worker with maintenance, not by deleting it.
            logger.warning("server %s was unregistered while running; registering again", self.name)
            self.server = self._register()

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                with connection_work():
                    try:
                        self.beat()
                    except Exception:
                        logger.exception("heartbeat of %s failed; trying again in %.0fs", self.name, self.interval)
        finally:
            connection.close()
