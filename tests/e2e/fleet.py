"""A fleet for fault tests: the API under uvicorn and `rundramatiq` workers, each a
real process the test can kill, stop or start again, sharing one database, one broker
and one media folder.

The timings are shortened so that faults heal within seconds: a job's lease is 5 s, a
worker silent for 5 s is offline, the sweeps run twice a second, retries back off for
a fraction of a second and a message unclaimed for 2 s is sent again.
"""

from __future__ import annotations

import signal
import sys
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from accounts.models import User
from accounts.services import api_token_create
from tests.e2e.processes import Api, Process, free_port, healthy, process_env, wait_until

LEASE_SECONDS = 5

FAST_RECOVERY = {
    "BACKSERV_LEASE_SECONDS": str(LEASE_SECONDS),
    "BACKSERV_SWEEP_INTERVAL_SECONDS": "0.5",
    "BACKSERV_HEARTBEAT_INTERVAL_SECONDS": "1",
    "BACKSERV_HEARTBEAT_MISSES": "5",
    "BACKSERV_RETRY_BACKOFF_SECONDS": "0.2",
    "BACKSERV_RETRY_BACKOFF_MAX_SECONDS": "1",
    "BACKSERV_REDISPATCH_AFTER_SECONDS": "2",
    # Dramatiq's own: a consumer that lost its broker tries again after this many ms.
    "dramatiq_restart_delay": "500",
    "GENERATION_MAX_STEPS": "1000",
}

TERMINAL_EVENTS = {"succeeded", "failed", "revoked", "timed_out"}


def redis_broker_url() -> str:
    """The Redis broker CI's services pass configures (BROKER_URL), or ""."""
    return settings.E2E_BROKER_URL if settings.E2E_BROKER_URL.startswith(("redis://", "rediss://")) else ""


# The fault tests start several processes each and take minutes: they run on the pass
# that has the fleet's services, like the other fleet tests.
needs_services = pytest.mark.skipif(
    not redis_broker_url(), reason="fault tests run on the services pass (BROKER_URL=redis://...)"
)


class Fleet:
    def __init__(self, *, directory: Path, database_url: str, broker_url: str, **overrides: str):
        self.directory = directory
        self.env = process_env(
            DATABASE_URL=database_url,
            BROKER_URL=broker_url,
            # Its own queue and notice channel: other fleets may share the broker.
            BACKSERV_QUEUE=f"e2e-{uuid.uuid4().hex[:12]}",
            BACKSERV_NOTIFY_CHANNEL=f"e2e-{uuid.uuid4().hex[:12]}",
            BACKSERV_VAR_DIR=str(directory / "var"),
            MEDIA_ROOT=str(self.media_root),
            **FAST_RECOVERY,
        )
        self.env.update(overrides)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.api_server: Process | None = None
        self.workers: dict[str, Process] = {}

    @property
    def media_root(self) -> Path:
        return self.directory / "media"

    def client(self, token: str) -> Api:
        return Api(self.base_url, token)

    def start_api(self) -> Process:
        args = [sys.executable, "-m", "uvicorn", "backserv_site.asgi:application", "--port", str(self.port)]
        self.api_server = Process([*args, "--workers", "2"], self.env, self.directory / "api.log")
        wait_until(lambda: healthy(self.base_url), timeout=60, what="the API server", process=self.api_server)
        return self.api_server

    def start_worker(self, name: str, *, threads: int = 1, staff: Api) -> Process:
        """Start a worker process named `name` (its server name) and wait until it is
        registered and online."""
        return self.start_workers(name, threads=threads, staff=staff)[name]

    def start_workers(self, *names: str, threads: int = 1, staff: Api) -> dict[str, Process]:
        """Start worker processes side by side, then wait until each is online."""
        started = {}
        for name in names:
            env = {**self.env, "BACKSERV_NODE_NAME": name}
            started[name] = self.workers[name] = Process(
                [sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads", str(threads)],
                env,
                self.directory / f"worker-{name}.log",
            )
        for name, worker in started.items():
            wait_until(partial(self.is_online, staff, name), timeout=90, what=name, process=worker)
        return started

    def is_online(self, staff: Api, name: str) -> bool:
        return self.server_status(staff, name) == "online"

    def server_status(self, staff: Api, name: str) -> str | None:
        response = staff.session.get(f"{self.base_url}/api/v1/servers", timeout=10)
        assert response.status_code == 200, response.text
        return next((server["status"] for server in response.json()["servers"] if server["name"] == name), None)

    def terminate_worker(self, name: str, timeout: float = 60) -> int:
        """SIGTERM to the worker's main process only, as Docker, Kubernetes and
        systemd's KillMode=mixed send it; returns its exit status."""
        worker = self.workers[name]
        worker.popen.send_signal(signal.SIGTERM)
        return worker.popen.wait(timeout)

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        if self.api_server is not None:
            self.api_server.stop()

    def logs(self) -> str:
        """The end of each process's log, for a failure report."""
        logs = sorted(self.directory.glob("*.log"))
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}" for path in logs)

    def output_files(self) -> dict[str, list[str]]:
        """Every stored output, by job id."""
        folder = self.media_root / "outputs"
        if not folder.exists():
            return {}
        return {job.name: sorted(path.name for path in job.iterdir()) for job in folder.iterdir() if any(job.iterdir())}


def staff_api(fleet: Fleet, username: str = "operator") -> Api:
    """A staff client with every scope, its user made in the test database."""
    user = User.objects.create_user(username=username, is_staff=True, is_superuser=True)
    return fleet.client(api_token_create(user=user, scopes=("read", "write", "admin")).secret)


def event_types(api: Api, task_id: str) -> list[str]:
    """A finished job's event log, in order, as its Server-Sent Events stream gives it."""
    response = api.session.get(
        f"{api.base_url}/api/v1/tasks/{task_id}/events", headers={"Accept": "text/event-stream"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return [line.removeprefix("event: ") for line in response.text.splitlines() if line.startswith("event: ")]


def assert_finished_once(api: Api, job: dict[str, Any]) -> list[str]:
    """The job reached exactly one terminal state, and a successful one stored exactly
    the outputs of the attempt that succeeded."""
    events = event_types(api, job["task_id"])
    terminal = [event for event in events if event in TERMINAL_EVENTS]
    assert len(terminal) == 1, f"{job['task_id']}: terminal events {terminal} in {events}"
    if job["state"] == "SUCCESS":
        names = [output["url"].split("?")[0].rsplit("/", 1)[-1] for output in job["result"]["outputs"]]
        assert names == [f"{job['attempts']}-{index}.png" for index in range(len(names))], names
    return events
