"""`manage.py serve`'s GPU work in a child process (GENERATION WORKER_PROCESS).

The thread that launches a GPU's kernels must not share its interpreter with a web
server. Torch lets go of the GIL around every kernel launch; when another thread is
computing in Python (serving a request), the launching thread gets it back only when
that thread yields it, up to the switch interval (5 ms) later, and a denoising step
makes hundreds of launches (what that cost on an H200: bench/README.md, "Measurements
behind the design").

So `serve` keeps its HTTP server, in-process broker and worker threads, and each "run
task X" message its worker threads take is executed by this child process: the thread
waits for the child's answer with the GIL released. The child claims, runs and settles
the jobs in the shared database; the job-changed notices it makes are passed back so
the server's waiters (sync submits, event streams) wake at once.

The two talk over a socket pair, one JSON object a line. To the child:
`{"run": n, "task_id", "queue"}`; to the server: `{"done": n, "error": null|str}` and
`{"notify": [keys]}`. When the server closes its end (or dies), the child stops taking
jobs, lets the running ones finish, and exits. When the child dies, the messages it
held fail (Dramatiq retries them, starting a new child) and its jobs' leases lapse,
after which the sweep gives them another attempt.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection

from backserv_site.db import connection_work
from servers.routing import local_workers_present
from tasks import notify

logger = logging.getLogger(__name__)

# The environment variable that hands the child its end of the socket pair.
SOCKET_FD_VARIABLE = "BACKSERV_WORKER_PROCESS_FD"


class WorkerProcessLost(Exception):
    """The child process ended while it held the message."""


def wanted() -> bool:
    """Whether `serve` should run its GPU work in a child: WORKER_PROCESS, or by default
    when jobs will run on an NVIDIA GPU (decided without importing torch, which the
    server process never loads)."""
    configured = settings.GENERATION["WORKER_PROCESS"]
    if configured is not None:
        return bool(configured)
    device = settings.GENERATION["DEVICE"]
    if device:
        return device.startswith("cuda")
    return os.path.exists("/dev/nvidiactl")


_active: WorkerProcess | None = None


def active() -> WorkerProcess | None:
    """The child process this server's worker threads hand their messages to, if any."""
    return _active


def install(process: WorkerProcess | None) -> None:
    global _active
    _active = process


class WorkerProcess:
    """The server's side: starts the child at the first message (and again after it
    died) and hands it messages."""

    def __init__(self, threads: int):
        self.threads = threads
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._stopped = False

    def start(self) -> None:
        """Start the child now, so it preloads its models before the first job."""
        self._running_child()

    def execute(self, task_id: str, queue_name: str | None) -> None:
        self._running_child().execute(task_id, queue_name)

    def stop(self, timeout: float) -> None:
        """Let the child finish its running jobs and exit; messages handed over after
        this fail. Called before the server's worker threads are stopped: those wait
        for the child's answers, and the child's spells of runs end only once told."""
        with self._lock:
            child, self._child, self._stopped = self._child, None, True
        if child is not None:
            child.stop(timeout)

    def _running_child(self) -> _Child:
        with self._lock:
            if self._stopped:
                raise WorkerProcessLost("the server is stopping")
            if self._child is None or self._child.lost:
                if self._child is not None:
                    exit_code = self._child.exit_code()
                    logger.warning("the GPU worker process ended (exit code %s); starting another", exit_code)
                self._child = _Child.start(self.threads)
            return self._child


@dataclass
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class _Child:
    def __init__(self, popen: subprocess.Popen[bytes], link: socket.socket):
        self.popen = popen
        self.link = link
        self.lost = False
        self._pending: dict[int, _Pending] = {}
        self._numbers = itertools.count()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="worker-process-reader", daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, threads: int) -> _Child:
        server_end, child_end = socket.socketpair()
        env = {**os.environ, SOCKET_FD_VARIABLE: str(child_end.fileno())}
        manage_py = str(settings.BASE_DIR / "manage.py")
        popen = subprocess.Popen(
            [sys.executable, manage_py, "worker_process", "--threads", str(threads)],
            env=env,
            pass_fds=[child_end.fileno()],
            # Its own session: a Ctrl-C in the terminal reaches the server, which then
            # stops the child in order, not both at once mid-job.
            start_new_session=True,
        )
        child_end.close()
        logger.info("started the GPU worker process (pid %d, %d threads)", popen.pid, threads)
        return cls(popen, server_end)

    def execute(self, task_id: str, queue_name: str | None) -> None:
        pending = _Pending()
        with self._lock:
            if self.lost:
                raise WorkerProcessLost(f"the GPU worker process ended before task {task_id} was handed over")
            number = next(self._numbers)
            self._pending[number] = pending
            try:
                _send(self.link, {"run": number, "task_id": str(task_id), "queue": queue_name})
            except OSError as error:
                del self._pending[number]
                raise WorkerProcessLost(f"could not hand task {task_id} over: {error}") from error
        pending.done.wait()
        if pending.error is not None:
            raise WorkerProcessLost(f"task {task_id}: {pending.error}")

    def exit_code(self) -> int | None:
        return self.popen.poll()

    def stop(self, timeout: float) -> None:
        # Closing our end is the child's signal to finish its running jobs and exit.
        with contextlib.suppress(OSError):
            self.link.shutdown(socket.SHUT_WR)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("the GPU worker process did not stop within %.0fs; killing it", timeout)
            self.popen.kill()
            self.popen.wait()
        self._reader.join(5)
        self.link.close()

    def _read(self) -> None:
        try:
            for line in self.link.makefile("rb"):
                message = json.loads(line)
                if "notify" in message:
                    notify.hub.dispatch(message["notify"])
                else:
                    self._settle(message["done"], message.get("error"))
        except (OSError, ValueError):
            logger.warning("lost the GPU worker process's link", exc_info=True)
        finally:
            with self._lock:
                self.lost = True
                pending, self._pending = self._pending, {}
            for number in pending:
                pending[number].error = "the GPU worker process ended while it ran the message"
                pending[number].done.set()

    def _settle(self, number: int, error: str | None) -> None:
        with self._lock:
            pending = self._pending.pop(number, None)
        if pending is not None:
            pending.error = error
            pending.done.set()


def _send(link: socket.socket, message: dict[str, Any]) -> None:
    link.sendall(json.dumps(message).encode() + b"\n")


def serve_parent(link: socket.socket, threads: int) -> None:
    """The child's side: run the server's messages on `threads` threads until the
    server closes the link."""
    from generation.models_cache import preload_models
    from generation.runner import execute_message

    send_lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        with send_lock:
            try:
                _send(link, message)
            except OSError:
                # The server is gone; the link's end stops this process.
                logger.debug("could not reach the server", exc_info=True)

    notify.relays.append(lambda keys: send({"notify": keys}))
    if not settings.SERVERS["REGISTER_WORKERS"]:
        # As the server that started it: its routing passes send overflow to it too.
        local_workers_present()
    if settings.GENERATION["PRELOAD_MODELS"]:
        with connection_work():
            logger.info("preloaded models: %s", ", ".join(preload_models()) or "none")

    messages: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def work() -> None:
        # The runner ends a spell of runs early once this is False (a shutdown).
        threading.current_thread().running = True  # type: ignore[attr-defined]
        try:
            while (message := messages.get()) is not None:
                error = None
                try:
                    with connection_work():
                        execute_message(message["task_id"], message["queue"])
                except Exception as failure:
                    logger.exception("running task %s failed", message["task_id"])
                    error = f"{type(failure).__name__}: {failure}"
                send({"done": message["run"], "error": error})
        finally:
            connection.close()

    workers = [threading.Thread(target=work, name=f"gpu-worker-{index}") for index in range(threads)]
    for worker in workers:
        worker.start()
    try:
        for line in link.makefile("rb"):
            messages.put(json.loads(line))
    finally:
        for worker in workers:
            worker.running = False  # type: ignore[attr-defined]
        for _ in workers:
            messages.put(None)
        for worker in workers:
            worker.join()
