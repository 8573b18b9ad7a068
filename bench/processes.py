"""Processes the benchmarks start: a free port, and a process in a group of its own,
logged to a file and stopped as an operator stops it. Imports nothing beyond the
standard library, so it runs on a GPU host without the fleet's Postgres client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.log = log
        self._handle = log.open("wb")
        self.popen = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._handle, stderr=subprocess.STDOUT, start_new_session=True
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 30) -> None:
        if self.alive():
            # SIGTERM to the leader only, as an operator stops it: it passes the signal
            # on to its own children. Sent to the whole group as well, a dramatiq
            # worker process gets it twice, which means "kill yourself now": it then
            # skips its clean shutdown and its server stays registered online in the
            # bench database, where the next benchmark's submits are routed to it.
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        self._handle.close()
