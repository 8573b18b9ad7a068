"""A real local HTTP server for input URLs, small images, and job helpers."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from rest_framework.test import APIClient

from tasks.models import Task


def png_bytes(width: int, height: int, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def astronaut_path() -> Path:
    """scikit-image's bundled photo with one clear face (read from the installed wheel)."""
    import skimage

    return Path(skimage.__file__).parent / "data" / "astronaut.png"


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Upload:
    path: str
    content_type: str
    body: bytes


class ImageServer:
    """Routes: path -> Route. Records the paths it was asked for, and takes PUTs (an
    upload URL) answering `put_status`, recording each."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        self.put_status = 200
        self.uploads: list[Upload] = []
        # path -> how many more GETs of it answer 503 before its route does.
        self.failures: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                route = server.routes.get(self.path, Route(status=404, body=b"not found"))
                if server.failures.get(self.path):
                    server.failures[self.path] -= 1
                    route = Route(status=503, body=b"busy")
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)

            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                server.uploads.append(Upload(self.path, self.headers.get("Content-Type", ""), body))
                self.send_response(server.put_status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        # Port 0: the system picks a free one, so parallel sessions never collide.
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def serve(self, path: str, body: bytes, status: int = 200, **headers: str) -> str:
        self.routes[path] = Route(status=status, body=body, headers=headers)
        return self.url(path)


@pytest.fixture
def image_server() -> Iterator[ImageServer]:
    server = ImageServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def allow_loopback(settings: Any) -> None:
    """The test server lives on loopback, which inputs may not reach unless allowed."""
    settings.BACKSERV = {**settings.BACKSERV, "ALLOWED_NETWORKS": ["127.0.0.0/8", "::1/128"]}


@pytest.fixture
def run_job(client: APIClient, worker: Any) -> Callable[..., Task]:
    """Submit a job as the owner and wait for it to finish; returns the finished Task."""

    def run(task_type: str, params: dict[str, Any], api_client: APIClient | None = None) -> Task:
        response = (api_client or client).post(
            "/api/v1/tasks", {"task_type": task_type, "params": params}, format="json"
        )
        assert response.status_code == 202, response.content
        return worker.wait_for(response.json()["task_id"])

    return run


def output_bytes(task: Task, index: int = 0) -> bytes:
    from django.core.files.storage import default_storage

    with default_storage.open(task.result["outputs"][index]["path"], "rb") as stored:
        return stored.read()


def output_image(task: Task, index: int = 0) -> Image.Image:
    image = Image.open(io.BytesIO(output_bytes(task, index)))
    assert image.format == "PNG"
    return image.convert("RGB")
