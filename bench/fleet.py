"""A small real fleet for the benchmarks: Postgres, a broker, the API under uvicorn and
one `manage.py rundramatiq` worker process, each a process of its own as in production.

The benchmark process itself runs Django on the same database, to read the jobs'
timestamps (submitted_at, started_at, completed_at are written by the API and the
worker, so the figures do not include the benchmark's own polling).

    from fleet import Fleet
    with Fleet(worker_env={"DYNAMIC_BATCH_SIZE": "1"}) as fleet:
        fleet.submit(...)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from processes import Process, free_port
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/backserv_bench_fleet"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/9"
SECRET_KEY = "bench-only-secret-key-0123456789-abcdefghijklmnop"


def fleet_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        BROKER_URL=os.environ.get("BROKER_URL", DEFAULT_BROKER_URL),
        DJANGO_SETTINGS_MODULE="backserv_site.settings",
        SECRET_KEY=SECRET_KEY,
        LOG_LEVEL="WARNING",
        MODELS_DIR=str(ROOT / "var" / "models"),
        # A benchmark submits far past any client's rate limit.
        RATE_LIMIT_DEFAULT="10000000/min",
        RATE_LIMIT_TASK_CREATE="10000000/min",
        BACKSERV_MAX_UNFINISHED_TASKS="100000",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def _on_maintenance_db(url: str) -> tuple[Any, str]:
    """A connection to the server's maintenance db, and the name of `url`'s database."""
    import psycopg

    maintenance = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    return psycopg.connect(maintenance, autocommit=True), urlsplit(url).path.lstrip("/")


def database_create_if_missing(url: str) -> None:
    """The bench database on a fresh machine: created on the server's maintenance db."""
    connection, database = _on_maintenance_db(url)
    with connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone() is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def database_drop(url: str) -> None:
    """The bench database gone, with every job and server of earlier runs."""
    connection, database = _on_maintenance_db(url)
    with connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(database)))


def setup_django() -> None:
    """Django in this process, on the fleet's database."""
    for key, value in fleet_env().items():
        os.environ.setdefault(key, value)
    if os.environ["DATABASE_URL"].startswith("postgres"):
        database_create_if_missing(os.environ["DATABASE_URL"])
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def manage(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def _log(name: str) -> Path:
    return Path(tempfile.gettempdir()) / f"backserv-bench-{name}.log"


def wait_until(condition: Callable[[], Any], *, timeout: float, what: str, poll: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


class Fleet:
    def __init__(
        self,
        *,
        worker_env: dict[str, str] | None = None,
        worker_threads: int = 1,
        api_workers: int = 1,
        with_worker: bool = True,
        settings_module: str = "backserv_site.settings",
    ):
        # bench/ on the path: bench/api.py serves its baseline views from there.
        self.env = fleet_env(DJANGO_SETTINGS_MODULE=settings_module, PYTHONPATH=str(ROOT / "bench"))
        self.worker_env = fleet_env(**(worker_env or {}))
        self.worker_threads = worker_threads
        self.api_workers = api_workers
        self.with_worker = with_worker
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.processes: list[Process] = []
        self.worker: Process | None = None
        self.session = requests.Session()

    def __enter__(self) -> Fleet:
        manage("migrate", "--noinput", env=self.env)
        manage("make_demo_models", env=self.env)
        token = manage("create_api_token", "bench-fleet", "--staff", "--name", "bench", env=self.env).strip()
        self.forget_jobs()
        self.forget_stopped_workers()
        self.session.headers["Authorization"] = f"Bearer {token.splitlines()[-1]}"
        uvicorn = [sys.executable, "-m", "uvicorn", "backserv_site.asgi:application", "--port", str(self.port)]
        uvicorn += ["--workers", str(self.api_workers), "--log-level", "warning", "--no-access-log"]
        self.processes.append(Process(uvicorn, self.env, _log("api")))
        if self.with_worker:
            self._start_worker()
        try:
            wait_until(self._healthy, timeout=60, what="the API")
            if self.with_worker:
                # The first job waits for the worker to boot and load its model.
                self.wait_finished([self.submit()["task_id"]], timeout=180)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _start_worker(self) -> None:
        worker = [sys.executable, "manage.py", "rundramatiq", "--processes", "1"]
        worker += ["--threads", str(self.worker_threads)]
        self.worker = Process(worker, self.worker_env, _log("worker"))
        self.processes.append(self.worker)

    def restart_worker(self, worker_env: dict[str, str]) -> None:
        """A worker process with `worker_env`, in place of the one running (if any), the
        API left as it is: a benchmark of several worker settings starts the fleet once.
        Earlier jobs and their messages are forgotten first; returns once the worker
        has run a first job."""
        if self.worker is not None:
            self.worker.stop()
            self.processes.remove(self.worker)
            self.worker = None
        self.forget_jobs()
        self.forget_stopped_workers()
        self.worker_env = fleet_env(**worker_env)
        self._start_worker()
        self.wait_finished([self.submit()["task_id"]], timeout=180)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        self.worker = None

    def forget_jobs(self) -> None:
        """Delete the bench user's jobs of earlier runs: a queue of thousands left by
        bench/api.py would slow every later queue-position count, and a worker would
        run them. Then vacuum what they leave behind, and drop their messages: bench/api.py
        leaves one on the shared queue for every job it submitted, which a worker would
        have to read through before this run's first job."""
        import dramatiq
        from django.db import connection

        from tasks.models import Task

        # With the rows bench/api.py's baseline inserts (bench/baseline/urls.py).
        Task.objects.filter(owner__username__in=["bench-fleet", "bench-baseline"]).delete()
        dramatiq.get_broker().flush_all()  # this process's queues: the shared ones
        if connection.vendor == "postgresql":
            # The deleted rows stay in the indexes as dead entries, which every count
            # of this run would step over until autovacuum happens to come by.
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE tasks_task, tasks_taskevent")

    def forget_stopped_workers(self) -> None:
        """Unregister the worker servers earlier runs left behind (stopped, or killed and
        silent), so every run starts with the same registry: with one left, each of
        bench/api.py's submits (it runs no worker) would take the routing path and
        wait for a server; without, it goes to the shared queue. A worker registers
        itself again when it boots."""
        from servers.models import Server, ServerKind, ServerStatus
        from servers.services import server_unregister, servers_mark_silent_offline

        servers_mark_silent_offline()
        for server in Server.objects.filter(kind=ServerKind.WORKER, status=ServerStatus.OFFLINE):
            server_unregister(server=server)

    def _healthy(self) -> bool:
        try:
            return self.session.get(f"{self.base_url}/health", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def submit(self, task_type: str = "image_creation", **params: Any) -> dict[str, Any]:
        body = {"task_type": task_type, "params": {"prompt": "a red fox", "width": 64, "height": 64, **params}}
        response = self.session.post(f"{self.base_url}/api/v1/tasks", json=body, timeout=30)
        if response.status_code != 202:
            raise RuntimeError(f"submit answered {response.status_code}: {response.text[:500]}")
        return response.json()

    def submit_batch(self, jobs: list[dict[str, Any]], task_type: str = "image_creation") -> list[str]:
        """Queue the jobs in one request (POST /api/v1/tasks/batch): all waiting at once."""
        base = {"prompt": "a red fox", "width": 64, "height": 64}
        body = {"tasks": [{"task_type": task_type, "params": {**base, **params}} for params in jobs]}
        response = self.session.post(f"{self.base_url}/api/v1/tasks/batch", json=body, timeout=60)
        answer = response.json()
        if response.status_code != 200 or answer["rejected"]:
            raise RuntimeError(f"batch submit answered {response.status_code}: {response.text[:500]}")
        return [result["task"]["task_id"] for result in answer["results"]]

    def wait_finished(self, task_ids: list[str], *, timeout: float = 600, poll: float = 0.05) -> list[Any]:
        """The jobs, once every one is finished; raises if one did not succeed."""
        from tasks.models import TERMINAL_STATES, Task, TaskState

        for process in self.processes:
            if not process.alive():
                raise RuntimeError(f"{process.log} ended:\n{process.log.read_text()[-3000:]}")
        wait_until(
            lambda: not Task.objects.filter(pk__in=task_ids).exclude(state__in=TERMINAL_STATES).exists(),
            timeout=timeout,
            what=f"{len(task_ids)} jobs",
            poll=poll,
        )
        tasks = list(Task.objects.filter(pk__in=task_ids))
        failed = [task for task in tasks if task.state != TaskState.SUCCESS]
        if failed:
            raise RuntimeError(f"{failed[0].pk} ended {failed[0].state}: {failed[0].error_message}")
        return tasks


def spread(values: list[float]) -> str:
    """min / median / max, as the closing notes quote them."""
    ordered = sorted(values)
    return f"{ordered[0]:.2f} / {ordered[len(ordered) // 2]:.2f} / {ordered[-1]:.2f}"
