"""The two stacks bench/peer/compare.py measures, behind one interface: Back.Serv's fleet
(bench/fleet.py) and the FastAPI + Celery peer (app.py, worker.py, store.py, run from
bench/peer/.venv). This module runs in the project's virtualenv, beside the fleet: it
starts the peer's processes with the peer's own Python and reads the peer's jobs
straight from its database, so the figures never include a status poll over HTTP.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleet import Fleet, database_create_if_missing, wait_until
from processes import Process, free_port

PEER_DIR = Path(__file__).resolve().parent
BENCH_DIR = PEER_DIR.parent
PEER_PYTHON = PEER_DIR / ".venv" / "bin" / "python"
DEFAULT_PEER_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/backserv_peer"
DEFAULT_PEER_BROKER_URL = "redis://127.0.0.1:6379/8"
BACKSERV_VARIABLES = ("DATABASE_URL", "BROKER_URL", "REDIS_URL", "CACHE_URL", "DJANGO_SETTINGS_MODULE", "SECRET_KEY")
SUBMIT_BODY = {"task_type": "image_creation", "params": {"prompt": "a red fox", "width": 64, "height": 64}}


@dataclass(frozen=True)
class Timing:
    """One finished job's timestamps, as its API and its worker wrote them."""

    submitted_at: datetime
    started_at: datetime
    completed_at: datetime


class BackServ:
    """Back.Serv's fleet (uvicorn with 2 workers, Postgres, Redis; start_worker: one
    `rundramatiq` process with one thread) under the interface compare.py drives."""

    name = "Back.Serv"
    submit_path = "/api/v1/tasks"

    def __init__(self) -> None:
        self.fleet = Fleet(with_worker=False, api_workers=2)

    def __enter__(self) -> BackServ:
        self.fleet.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.fleet.__exit__(*exc_info)

    def start_worker(self, worker_env: dict[str, str]) -> None:
        """A worker with `worker_env` in place of the last, once the jobs and messages
        of earlier cases are forgotten; returns when it has run a first job."""
        self.fleet.restart_worker(worker_env)

    @property
    def base_url(self) -> str:
        return self.fleet.base_url

    @property
    def token(self) -> str:
        return self.fleet.session.headers["Authorization"].removeprefix("Bearer ")

    def status_path(self, task_id: str) -> str:
        return f"/api/v1/tasks/{task_id}"

    def submit(self, **params: Any) -> str:
        return self.fleet.submit(**params)["task_id"]

    def timings(self, task_ids: list[str], *, poll: float = 0.05) -> list[Timing]:
        tasks = self.fleet.wait_finished(task_ids, poll=poll)
        return [Timing(task.submitted_at, task.started_at, task.completed_at) for task in tasks]


class Peer:
    """The FastAPI + Celery peer: `uvicorn app:app --workers 2`, and (start_worker) a
    `celery worker --pool solo`, on a Postgres database and a Redis DB of its own."""

    name = "FastAPI + Celery"
    submit_path = "/tasks"

    def __init__(self, *, cpu_threads: int, output_dir: Path | None = None):
        self.database_url = os.environ.get("PEER_DATABASE_URL", DEFAULT_PEER_DATABASE_URL)
        self.broker_url = os.environ.get("PEER_BROKER_URL", DEFAULT_PEER_BROKER_URL)
        self.output_dir = output_dir or Path(tempfile.gettempdir()) / "backserv-peer-outputs"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        # Back.Serv's settings stay out of the peer's processes (Celery too reads a
        # BROKER_URL from the environment), and so does the project's virtualenv.
        for key in (*BACKSERV_VARIABLES, "VIRTUAL_ENV", "PYTHONHOME"):
            self.env.pop(key, None)
        self.env.update(
            PYTHONPATH=str(PEER_DIR),
            PYTHONUNBUFFERED="1",
            PEER_DATABASE_URL=self.database_url.replace("postgres://", "postgresql+psycopg://", 1),
            PEER_BROKER_URL=self.broker_url,
            PEER_CPU_THREADS=str(cpu_threads),
            PEER_MODEL_DIR=str(BENCH_DIR.parent / "var" / "models" / "tiny-sd"),
            PEER_OUTPUT_DIR=str(self.output_dir),
        )
        self.processes: list[Process] = []
        self.session = requests.Session()
        self.token = ""
        self.connection: psycopg.Connection[Any] | None = None

    def __enter__(self) -> Peer:
        if not PEER_PYTHON.exists():
            raise RuntimeError(f"{PEER_PYTHON} is missing: run bench/peer/setup.sh first")
        database_create_if_missing(self.database_url)
        self.forget_jobs()
        self.session.headers["Authorization"] = f"Bearer {self.token}"
        uvicorn = [str(PEER_PYTHON), "-m", "uvicorn", "app:app", "--app-dir", str(PEER_DIR), "--port", str(self.port)]
        uvicorn += ["--workers", "2", "--log-level", "warning", "--no-access-log"]
        self.processes.append(Process(uvicorn, self.env, _log("peer-api")))
        self.connection = psycopg.connect(self.database_url, autocommit=True)
        try:
            wait_until(self._healthy, timeout=60, what="the peer's API")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def forget_jobs(self) -> None:
        """An empty jobs table and queue (the API-only cases leave thousands of both),
        and a new token."""
        result = subprocess.run(
            [str(PEER_PYTHON), str(PEER_DIR / "store.py"), "reset", "bench-peer"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"store.py reset failed:\n{result.stderr[-3000:]}")
        self.token = result.stdout.strip().splitlines()[-1]
        self.session.headers["Authorization"] = f"Bearer {self.token}"
        redis.Redis.from_url(self.broker_url).flushdb()

    def start_worker(self) -> None:
        """The Celery worker, once its jobs and queue are forgotten; returns when it has
        run a first job (its model loaded)."""
        self.forget_jobs()
        worker = [str(PEER_PYTHON), "-m", "celery", "-A", "worker", "worker", "--pool", "solo", "--concurrency", "1"]
        worker += ["--loglevel", "WARNING", "--without-gossip", "--without-mingle"]
        self.processes.append(Process(worker, self.env, _log("peer-worker")))
        self.timings([self.submit(steps=1)], timeout=180)

    def _healthy(self) -> bool:
        try:
            return self.session.get(f"{self.base_url}/health", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def status_path(self, task_id: str) -> str:
        return f"/tasks/{task_id}"

    def submit(self, **params: Any) -> str:
        body = {**SUBMIT_BODY, "params": {**SUBMIT_BODY["params"], **params}}
        response = self.session.post(f"{self.base_url}/tasks", json=body, timeout=30)
        if response.status_code != 202:
            raise RuntimeError(f"the peer's submit answered {response.status_code}: {response.text[:500]}")
        return response.json()["task_id"]

    def timings(self, task_ids: list[str], *, poll: float = 0.05, timeout: float = 600) -> list[Timing]:
        """The jobs' timestamps once every one has finished; raises if one failed."""
        for process in self.processes:
            if not process.alive():
                raise RuntimeError(f"{process.log} ended:\n{process.log.read_text()[-3000:]}")
        assert self.connection is not None
        query = "SELECT state, error, submitted_at, started_at, completed_at FROM jobs WHERE id = ANY(%s::uuid[])"

        def finished() -> list[tuple[Any, ...]] | None:
            rows = self.connection.execute(query, [task_ids]).fetchall()
            done = len(rows) == len(task_ids) and all(row[0] in ("SUCCESS", "FAILURE") for row in rows)
            return rows if done else None

        rows = wait_until(finished, timeout=timeout, what=f"{len(task_ids)} peer jobs", poll=poll)
        failed = [row for row in rows if row[0] != "SUCCESS"]
        if failed:
            raise RuntimeError(f"a peer job ended {failed[0][0]}: {failed[0][1]}")
        return [Timing(*row[2:]) for row in rows]


def _log(name: str) -> Path:
    return Path(tempfile.gettempdir()) / f"backserv-bench-{name}.log"
