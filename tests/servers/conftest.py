"""Servers for routing tests: rows registered through the services, in-process workers
that each consume one server's queue (as separate GPU machines would), and a real local
HTTP server playing a remote GPU server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from servers.models import Server, ServerKind
from servers.presence import ServerPresence
from servers.services import server_register
from tests.conftest import forget_worker


@pytest.fixture
def make_server(db: None) -> Callable[..., Server]:
    def make(name: str, **fields: Any) -> Server:
        fields.setdefault("kind", ServerKind.WORKER)
        fields.setdefault("capabilities", ["image_creation"])
        return server_register(name=name, **fields).server

    return make


_booted: list[StubBroker] = []


def boot_once(broker: StubBroker) -> None:
    """Once per process, as in a real one (it starts the time-limit watchdog)."""
    if broker not in _booted:
        broker.emit_after("process_boot")
        _booted.append(broker)


class ServerWorker:
    """One "GPU machine": a Dramatiq worker consuming only its server's queue, and
    (optionally) the heartbeat thread a real worker runs."""

    def __init__(self, broker: StubBroker, server: Server, threads: int):
        import generation.actors  # noqa: F401  (registers the actors)
        import servers.actors  # noqa: F401

        self.broker = broker
        self.server = server
        self.threads = threads
        self.worker: dramatiq.Worker | None = None
        self.presence: ServerPresence | None = None

    def start(self, *, heartbeat: float | None = None) -> ServerWorker:
        if heartbeat is not None:
            self.presence = ServerPresence(
                name=self.server.name,
                capabilities=self.server.capabilities,
                max_concurrent=self.server.max_concurrent,
                interval=heartbeat,
            )
            self.presence.start()
        self.broker.declare_queue(self.server.queue_name)
        boot_once(self.broker)
        self.worker = dramatiq.Worker(
            self.broker, queues={self.server.queue_name}, worker_threads=self.threads, worker_timeout=50
        )
        self.worker.start()
        return self

    def fall_silent(self) -> None:
        """Stop heartbeating without a word, as a machine that lost power or network."""
        if self.presence is not None:
            self.presence.stop(offline=False)
            self.presence = None

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            forget_worker(self.broker, self.worker)
            self.worker = None
        if self.presence is not None:
            self.presence.stop()
            self.presence = None


@pytest.fixture
def server_workers(
    transactional_db: None, broker: StubBroker, demo_models: Path
) -> Iterator[Callable[..., ServerWorker]]:
    started: list[ServerWorker] = []

    # Heartbeating like real workers, else the sweep's monitor rightly finds them silent.
    def start(server: Server, *, threads: int = 2, heartbeat: float | None = 1.0) -> ServerWorker:
        worker = ServerWorker(broker, server, threads).start(heartbeat=heartbeat)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


class RemoteGpu:
    """A local HTTP server standing in for a remote GPU server: records the jobs POSTed
    to /predict, answers /health, and runs `on_job` (if set) on its own thread for each."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []
        # The Authorization header each job and each health check came with ("" without one).
        self.authorizations: list[str] = []
        self.health_authorizations: list[str] = []
        self.predict_status = 202
        self.health_status = 200
        self.on_job: Callable[[dict[str, Any]], None] | None = None
        self.job_threads: list[threading.Thread] = []
        remote = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                remote.health_authorizations.append(self.headers.get("Authorization", ""))
                self._answer(remote.health_status, {"status": "ok"})

            def do_POST(self) -> None:
                job = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                remote.jobs.append(job)
                remote.authorizations.append(self.headers.get("Authorization", ""))
                self._answer(remote.predict_status, {"accepted": remote.predict_status < 300})
                if remote.predict_status < 300 and remote.on_job is not None:
                    thread = threading.Thread(target=remote.on_job, args=(job,), daemon=True)
                    remote.job_threads.append(thread)
                    thread.start()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        for thread in self.job_threads:
            thread.join(timeout=30)
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def remote_gpu() -> Iterator[RemoteGpu]:
    remote = RemoteGpu()
    yield remote
    remote.close()
