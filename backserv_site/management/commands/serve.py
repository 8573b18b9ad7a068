from __future__ import annotations

import logging
from typing import Any

import dramatiq
import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from generation import worker_process
from servers.routing import local_workers_present
from tasks.services import tasks_recover_after_restart

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Serve the API, admin and (unless --no-worker) worker threads in this one process."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--threads", type=int, default=settings.BACKSERV["WORKER_THREADS"])
        parser.add_argument("--no-worker", action="store_true", help="serve HTTP only (workers run elsewhere)")

    def handle(self, *args: Any, host: str, port: int, threads: int, no_worker: bool, **options: Any) -> None:
        child = None
        if not no_worker and worker_process.wanted():
            # A GPU's kernels are launched from a process of their own (see
            # generation.worker_process); started first, so its models load meanwhile.
            child = worker_process.WorkerProcess(threads)
            worker_process.install(child)
            child.start()
        worker = None if no_worker else self._start_worker(threads)
        try:
            config = uvicorn.Config(
                "backserv_site.asgi:application", host=host, port=port, lifespan="off", log_level="info"
            )
            # uvicorn handles Ctrl-C / SIGTERM: it stops accepting, finishes requests, returns.
            uvicorn.Server(config).run()
        finally:
            if worker is not None:
                self.stderr.write("stopping workers (running jobs finish their current step or are requeued)")
                if child is not None:
                    child.stop(timeout=30)
                worker.stop(timeout=30_000)

    def _start_worker(self, threads: int) -> dramatiq.Worker:
        import generation.actors  # noqa: F401  (registers the actors on the broker)
        import tasks.actors  # noqa: F401

        if not settings.SERVERS["REGISTER_WORKERS"]:
            # These threads take what no registered server can (servers.routing).
            local_workers_present()
        if not settings.DISTRIBUTED:
            # Only this process runs jobs in embedded mode, so whatever the last run left
            # claimed is orphaned; and the in-process broker lost its messages.
            moved = tasks_recover_after_restart()
            if moved:
                self.stderr.write(f"recovered {moved} job(s) left running by the last run")
        broker = dramatiq.get_broker()
        broker.emit_after("process_boot")
        worker = dramatiq.Worker(
            broker, worker_threads=threads, queues={settings.BACKSERV["QUEUE_NAME"], settings.BACKSERV["WEBHOOK_QUEUE"]}
        )
        worker.start()
        return worker
