"""Postgres and Redis servers of bench/fleet_sim.py's own, on free ports over a
temporary folder, so that every process of theirs is the simulation's: their CPU is
read from /proc without counting other people's work, and Postgres takes as many
connections as the simulated fleet opens (a shared server's max_connections of 100
is below what 200 worker threads hold). Postgres keeps fsync on, as in production, and
loads pg_stat_statements. As root, Postgres' tools run as the `postgres` user (it
refuses root), as tests/e2e/services.py runs them."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from processes import Process, free_port

DATABASE = "backserv_sim"


def _postgres_bin_dir() -> Path | None:
    """Debian keeps the server's tools off PATH, one folder per major version."""
    on_path = shutil.which("pg_ctl")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda path: int(path.parts[-2]), reverse=True)
    return next(
        (folder for folder in candidates if (folder / "initdb").exists() and (folder / "pg_ctl").exists()), None
    )


def private_servers_missing() -> str:
    """Why this machine cannot start the private servers, or "" when it can."""
    if _postgres_bin_dir() is None:
        return "no PostgreSQL server tools (initdb, pg_ctl) on PATH or under /usr/lib/postgresql/*/bin"
    if os.geteuid() == 0 and (not shutil.which("runuser") or not _user_exists("postgres")):
        return "running as root, and Postgres refuses root: needs a 'postgres' user and runuser"
    if not shutil.which("redis-server"):
        return "redis-server is not on PATH"
    return ""


def _user_exists(name: str) -> bool:
    with contextlib.suppress(KeyError):
        pwd.getpwnam(name)
        return True
    return False


class PrivatePostgres:
    def __init__(self, *, max_connections: int):
        bin_dir = _postgres_bin_dir()
        assert bin_dir is not None, private_servers_missing()
        self.bin_dir = bin_dir
        self.max_connections = max_connections
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/{DATABASE}"
        # Not under the bench's own temporary folders: as root those are closed to postgres.
        self.directory = Path(tempfile.mkdtemp(prefix="backserv-sim-pg-"))
        self.data = self.directory / "data"
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.directory, user.pw_uid, user.pw_gid)
            self._as_postgres = ["runuser", "-u", "postgres", "--"]

    def _run(self, tool: str, *args: str) -> None:
        command = [*self._as_postgres, str(self.bin_dir / tool), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = [
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1",
            f"-c max_connections={self.max_connections} -c shared_preload_libraries=pg_stat_statements",
        ]
        log = self.directory / "postgres.log"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(log), "-o", " ".join(options), "-w", "start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", DATABASE)

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().splitlines()[0])

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)


class PrivateRedis:
    """Keeps nothing on disk: a broker for one run."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = Path(tempfile.mkdtemp(prefix="backserv-sim-redis-"))
        self.process: Process | None = None

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = Process([*args, "--dir", str(self.directory)], dict(os.environ), self.directory / "redis.log")
        deadline = time.monotonic() + 10
        while "Ready to accept connections" not in self.process.log.read_text(errors="replace"):
            if time.monotonic() > deadline or not self.process.alive():
                raise RuntimeError(f"redis-server did not start:\n{self.process.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
