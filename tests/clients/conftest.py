"""A live Back.Serv for the client's tests, and the `backserv` command to drive it.

The server is `manage.py serve` on the embedded defaults (SQLite, the in-process broker,
worker threads, the tiny demo models) on a free port, started once for the session; the
command is the one `make install` puts in the venv. Each test makes its own jobs and
looks only at those, so the tests share the server without depending on each other.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Lock, Thread
from typing import Any

import pytest
import requests
from PIL import Image

from tests.client.conftest import Receiver, receiver  # noqa: F401  (the webhook receiver fixture)
from tests.e2e.processes import Process, free_port, healthy, manage, process_env, wait_until

BACKSERV = Path(sys.executable).parent / "backserv"
# Big and long enough to be caught mid-run on any machine (a 64 px step takes 3 ms).
SLOW_PARAMS = ("-p", "prompt=a slow one", "-p", "steps=600", "-p", "width=256", "-p", "height=256")
SMALL_PARAMS = {"width": 64, "height": 64, "steps": 4, "seed": 7}


@dataclass
class LiveServer:
    url: str
    token: str
    other_token: str
    process: Process

    def api(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> requests.Response:
        """The API itself, not through the client under test."""
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.api("GET", f"/api/v1/tasks/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_state(self, job_id: str, states: set[str], timeout: float = 120) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["state"] in states else None

        return wait_until(reached, timeout=timeout, what=f"{job_id} in {sorted(states)}", process=self.process)


@pytest.fixture(scope="session")
def backserv_server(tmp_path_factory: pytest.TempPathFactory, demo_models: Path) -> Iterator[LiveServer]:
    directory = tmp_path_factory.mktemp("client-live")
    env = process_env(
        BACKSERV_VAR_DIR=str(directory / "var"),
        MODELS_DIR=str(demo_models),
        GENERATION_MAX_STEPS="1000",
        # The webhook receiver and the failing input URL are on this machine.
        BACKSERV_ALLOW_PRIVATE_URLS="1",
    )
    # The embedded defaults: its own key under the var dir, its own cache.
    for name in ("SECRET_KEY", "CACHE_URL", "REDIS_URL"):
        env.pop(name, None)
    manage("migrate", "--noinput", env=env)
    token = manage("create_api_token", "alice", env=env).strip().splitlines()[-1]
    other_token = manage("create_api_token", "mallory", env=env).strip().splitlines()[-1]
    port = free_port()
    process = Process([sys.executable, "manage.py", "serve", "--port", str(port)], env, directory / "serve.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(url), timeout=60, what="the server", process=process)
        yield LiveServer(url=url, token=token, other_token=other_token, process=process)
    finally:
        process.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    server = getattr(item, "funcargs", {}).get("backserv_server")
    if report.failed and server is not None:
        report.sections.append(("live server log", server.process.output()))
    return report


def cli_env(backserv_server: LiveServer, **overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in {"FORCE_COLOR", "TTY_COMPATIBLE"}}
    # Wide enough that no table cuts a job id.
    env.update({"BACKSERV_URL": backserv_server.url, "BACKSERV_TOKEN": backserv_server.token, "COLUMNS": "200"})
    env.update(overrides)
    return env


Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(backserv_server: LiveServer, tmp_path: Path) -> Cli:
    """Runs `backserv ARGS...` in tmp_path against the live server, as alice."""
    assert BACKSERV.exists(), f"{BACKSERV} is missing: `make install` installs clients/python"

    def run(*args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BACKSERV), *args],
            cwd=tmp_path,
            env=cli_env(backserv_server, **env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def make_png(path: Path, size: tuple[int, int] = (64, 64), color: tuple[int, int, int] = (200, 40, 40)) -> Path:
    """A flat image: fine as an input, and with no face in it."""
    Image.new("RGB", size, color).save(path)
    return path


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Proxy:
    """Passes requests on to the live server and records them. `lose_next_answer`
    makes it drop the connection after the server has handled the next such request:
    the work is done, the client never hears."""

    url: str = ""
    recorded: list[Recorded] = field(default_factory=list)
    losing: set[tuple[str, str]] = field(default_factory=set)
    lock: Lock = field(default_factory=Lock)

    def lose_next_answer(self, method: str, path: str) -> None:
        with self.lock:
            self.losing.add((method, path))

    def sent(self, method: str, path: str) -> list[Recorded]:
        with self.lock:
            return [item for item in self.recorded if (item.method, item.path.split("?")[0]) == (method, path)]


HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


@pytest.fixture
def proxy(backserv_server: LiveServer) -> Iterator[Proxy]:
    state = Proxy()

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {key.lower(): value for key, value in self.headers.items()}
            path = self.path.split("?")[0]
            with state.lock:
                state.recorded.append(Recorded(self.command, self.path, headers, body))
                lose = (self.command, path) in state.losing
                state.losing.discard((self.command, path))
            upstream = requests.request(
                self.command,
                f"{backserv_server.url}{self.path}",
                headers={key: value for key, value in headers.items() if key not in HOP_BY_HOP},
                data=body,
                timeout=60,
            )
            if lose:
                self.close_connection = True
                return
            self.send_response(upstream.status_code)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(upstream.content)))
            self.end_headers()
            self.wfile.write(upstream.content)

        do_GET = do_POST = do_DELETE = _forward

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
