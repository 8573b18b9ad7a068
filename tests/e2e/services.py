"""Private Redis and Postgres servers for the tests that stop them.

The machine's own Redis and Postgres are never stopped: other people's tests use them.
A test that takes a service away starts its own on a free port, over a temporary data
folder, and stops that one. Postgres refuses to run as root, so as root its commands
run as the `postgres` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.e2e.processes import free_port


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_for_port(port: int, *, listening: bool, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while _port_open(port) != listening:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not {'start' if listening else 'stop'} within {timeout}s")
        time.sleep(0.05)


def redis_server_missing() -> str:
    """Why a private Redis cannot be started here, or "" when it can."""
    return "" if shutil.which("redis-server") else "redis-server is not on PATH"


class PrivateRedis:
    """A redis-server of the test's own that keeps nothing on disk: a restart loses
    every queued message, as a crashed broker without persistence does."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with (self.directory / "redis.log").open("ab") as log:
            self._process = subprocess.Popen(
                [*args, "--dir", str(self.directory)], stdout=log, stderr=subprocess.STDOUT
            )
        _wait_for_port(self.port, listening=True, timeout=10, what="redis-server")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        self._process.wait(10)
        self._process = None
        _wait_for_port(self.port, listening=False, timeout=10, what="redis-server")


_POSTGRES_TOOLS = ("initdb", "pg_ctl", "createdb")


def _postgres_bin_dir() -> Path | None:
    """A folder with the server's tools. Debian keeps them off PATH, one folder per
    major version; a pg_ctl on PATH may be a link into one of those."""
    on_path = shutil.which("pg_ctl")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda path: int(path.parts[-2]), reverse=True)
    return next((folder for folder in candidates if all((folder / tool).exists() for tool in _POSTGRES_TOOLS)), None)


def _postgres_user() -> pwd.struct_passwd | None:
    with contextlib.suppress(KeyError):
        return pwd.getpwnam("postgres")
    return None


def postgres_server_missing() -> str:
    """Why a private Postgres cannot be started here, or "" when it can."""
    if _postgres_bin_dir() is None:
        return "no PostgreSQL server binaries (pg_ctl, initdb) on PATH or under /usr/lib/postgresql/*/bin"
    if os.geteuid() == 0 and (_postgres_user() is None or not shutil.which("runuser")):
        return "running as root, and Postgres refuses root: needs a 'postgres' user and runuser"
    return ""


class PrivatePostgres:
    """A Postgres cluster of the test's own: initdb into a temporary folder, trust
    authentication on 127.0.0.1 only, no fsync (nothing here must survive a crash of
    the machine, only a stop of the server)."""

    def __init__(self) -> None:
        bin_dir = _postgres_bin_dir()
        assert bin_dir is not None, postgres_server_missing()
        self.bin_dir = bin_dir
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/backserv"
        # Not under pytest's tmp_path: as root that folder is closed to the postgres user.
        self.directory = Path(tempfile.mkdtemp(prefix="backserv-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            user = _postgres_user()
            assert user is not None, postgres_server_missing()
            os.chown(self.directory, user.pw_uid, user.pw_gid)
            self._as_postgres = ["runuser", "-u", "postgres", "--"]

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            [*self._as_postgres, str(self.bin_dir / tool), *args], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"{tool} failed:\n{result.stdout}\n{result.stderr}"

    def create(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "backserv")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        # Fast: open connections are cut, as when a database server restarts.
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
