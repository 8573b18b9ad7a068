"""Starting and stopping real Back.Serv processes for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.db import connection

BASE_DIR = Path(settings.BASE_DIR)


# The steps of a job a test acts on mid-run (kills its worker, restarts Postgres): 2 s
# of the tiny model where a step takes 3 ms (150 steps ended there before a 50 ms poll
# saw the first progress, written after PROGRESS_INTERVAL_SECONDS), 20-30 s on a slow
# machine.
MID_RUN_STEPS = 600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_database_url() -> str:
    """The test database, as the processes a test starts reach it."""
    database = connection.settings_dict
    if database["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{database['NAME']}"
    password = database.get("PASSWORD") or ""
    return f"postgres://{database['USER']}:{password}@{database['HOST']}:{database['PORT']}/{database['NAME']}"


def process_env(**overrides: str) -> dict[str, str]:
    """The environment of a real deployment: real settings, not the test settings."""
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "BROKER_URL"}}
    env.update(
        DJANGO_SETTINGS_MODULE="backserv_site.settings",
        SECRET_KEY="e2e-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="INFO",
        # The harness polls every 50 ms, past any real client's rate limit; the limits
        # have their own tests (tests/accounts/test_rate_limits.py).
        RATE_LIMIT_DEFAULT="100000/min",
        RATE_LIMIT_TASK_CREATE="100000/min",
        # One torch thread a process: the test's processes share two cores with each
        # other and the rest of the suite, and torch's spinning threads, oversubscribed,
        # made each denoising step over ten times slower.
        OMP_NUM_THREADS="1",
    )
    env.update(overrides)
    return env


def manage(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


class Process:
    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.log = log
        self._handle = log.open("ab")
        # Own process group: stop() reaches the workers rundramatiq forks.
        self.popen = subprocess.Popen(
            args, cwd=BASE_DIR, env=env, stdout=self._handle, stderr=subprocess.STDOUT, start_new_session=True
        )

    def signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signum)

    def stop(self, timeout: float = 30) -> None:
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.popen.wait(10)
        self._handle.close()

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait(10)
        self._handle.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def wait_until(condition: Callable[[], Any], *, timeout: float, what: str, process: Process | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if process is not None and process.popen.poll() is not None:
            raise AssertionError(f"process exited while waiting for {what}:\n{process.output()}")
        if time.monotonic() > deadline:
            detail = f"\n{process.output()}" if process is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(0.05)


def healthy(base_url: str) -> bool:
    try:
        return requests.get(f"{base_url}/health", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


class Api:
    def __init__(self, base_url: str, token: str):
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def submit(self, **params: Any) -> dict[str, Any]:
        body = {"task_type": "image_creation", "params": {"prompt": "a beautiful sunset", **params}}
        response = self.session.post(f"{self.base_url}/api/v1/tasks", json=body, timeout=10)
        assert response.status_code == 202, response.text
        return response.json()

    def job(self, task_id: str) -> dict[str, Any]:
        response = self.session.get(f"{self.base_url}/api/v1/tasks/{task_id}", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def wait_state(self, task_id: str, states: set[str], *, timeout: float, process: Process | None = None) -> dict:
        def reached() -> dict[str, Any] | None:
            job = self.job(task_id)
            return job if job["state"] in states else None

        return wait_until(reached, timeout=timeout, what=f"{task_id} in {states}", process=process)
