"""The bench's own processes, started and stopped: `manage.py serve` and its GPU worker,
`manage.py` commands, process groups; whether a service's port answers; and StepFailed,
how a step that went wrong says so."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from processes import Process, free_port

ROOT = Path(__file__).resolve().parent.parent


def kill_group(pid: int) -> None:
    """SIGKILL to what is left of a process group this bench started."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def tail(path: Path, characters: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-characters:]
    except OSError:
        return ""


class StepFailed(Exception):
    """A step of the bench crashed or a job did not succeed."""


class Server(Process):
    """One `manage.py serve` (API, broker and worker in one process, SQLite)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        super().__init__(command, env, log)

    def wait_healthy(self, timeout: float) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise StepFailed(f"serve exited {self.popen.returncode}; log: {self.log}\n{tail(self.log)}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise StepFailed(f"serve not healthy after {timeout}s; log: {self.log}\n{tail(self.log)}")
            time.sleep(0.1)

    def stop(self, timeout: float = 60) -> None:
        super().stop(timeout)
        # A child the leader did not take down with it would hold the GPU through the
        # next run. The GPU worker process has a session of its own: found by its pid.
        deadline = time.monotonic() + 30
        workers = self.worker_pids()
        while time.monotonic() < deadline and (
            group_alive(self.popen.pid) or any(worker_alive(pid) for pid in workers)
        ):
            time.sleep(0.1)
        kill_group(self.popen.pid)
        for pid in workers:
            if worker_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def worker_pids(self) -> list[int]:
        """The GPU worker processes the server said it started (GENERATION_WORKER_PROCESS)."""
        return [int(pid) for pid in WORKER_STARTED.findall(tail(self.log, 10_000_000))]


WORKER_STARTED = re.compile(r"started the GPU worker process \(pid (\d+)")


def group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def worker_alive(pid: int) -> bool:
    """Whether `pid` is still a worker_process of ours (not a pid since reused)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"worker_process" in command


def run_manage(args: list[str], env: dict[str, str], log: Path) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise StepFailed(f"manage.py {' '.join(args)} failed; log: {log}\n{result.stderr[-3000:]}")
    return result.stdout


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    default_port = {"postgres": 5432, "postgresql": 5432, "redis": 6379, "rediss": 6379}.get(parts.scheme, 0)
    try:
        with socket.create_connection((parts.hostname, parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False
