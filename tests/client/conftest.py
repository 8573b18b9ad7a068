"""A real ASGI server (uvicorn in a thread, serving backserv_site.asgi) and a real
local HTTP receiver for webhooks."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import uvicorn
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import api_token_create


@dataclass
class LiveServer:
    url: str
    ws_url: str


@pytest.fixture
def asgi_server(transactional_db: None) -> Iterator[LiveServer]:
    from backserv_site.asgi import application

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(application, lifespan="off", log_level="warning", ws="websockets-sansio", backlog=512)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield LiveServer(url=f"http://127.0.0.1:{port}", ws_url=f"ws://127.0.0.1:{port}")
    server.should_exit = True
    thread.join(timeout=15)
    sock.close()


def token_for(user: User) -> str:
    return api_token_create(user=user, name="live").secret


@pytest.fixture
def owner_token(owner: User) -> str:
    return token_for(owner)


@pytest.fixture
def other_token(other_user: User) -> str:
    return token_for(other_user)


@dataclass
class ReceivedHook:
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers each POST with the next status of `statuses` (the last one repeats)."""

    url: str
    statuses: list[int]
    received: list[ReceivedHook] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 30) -> list[ReceivedHook]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            assert time.monotonic() < deadline, f"received {len(self.received)} webhooks, expected {count}"
            time.sleep(0.02)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="", statuses=[200])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                state.received.append(ReceivedHook(headers={k.lower(): v for k, v in self.headers.items()}, body=body))
                status = state.statuses[min(len(state.received), len(state.statuses)) - 1]
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/backserv?source=test"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def allow_loopback_urls(settings: Any) -> None:
    settings.BACKSERV = {**settings.BACKSERV, "ALLOW_PRIVATE_URLS": True}


@pytest.fixture
def job_body() -> Callable[..., dict[str, Any]]:
    def body(**extra: Any) -> dict[str, Any]:
        params = {"prompt": "a beautiful sunset", "width": 64, "height": 64, "steps": 4, "seed": 7}
        return {"task_type": "image_creation", "params": params, **extra}

    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api_client_for(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client
