"""A token in a query string never reaches the logs of a real server: not uvicorn's
access lines, not django.request's warnings as our formatters write them."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import httpx2
import pytest
from uvicorn.logging import AccessFormatter

from accounts.models import User
from accounts.services import api_token_create
from backserv_site.logs import JsonFormatter, KeyValueFormatter
from tests.client.conftest import LiveServer, bearer


@pytest.fixture
def written_logs(asgi_server: LiveServer) -> Iterator[io.StringIO]:
    """Every line as `manage.py serve` would write it: uvicorn's access log at INFO in
    its own format (it does not propagate), the rest through both of our formatters."""
    stream = io.StringIO()
    access_logger = logging.getLogger("uvicorn.access")
    access_handler = logging.StreamHandler(stream)
    access_handler.setFormatter(AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s'))
    site_handlers = [logging.StreamHandler(stream) for _ in range(2)]
    site_handlers[0].setFormatter(KeyValueFormatter())
    site_handlers[1].setFormatter(JsonFormatter())
    level = access_logger.level
    access_logger.setLevel(logging.INFO)
    access_logger.addHandler(access_handler)
    for handler in site_handlers:
        logging.getLogger().addHandler(handler)
    yield stream
    access_logger.removeHandler(access_handler)
    access_logger.setLevel(level)
    for handler in site_handlers:
        logging.getLogger().removeHandler(handler)


def test_a_query_token_is_redacted_from_access_lines_and_request_warnings(
    asgi_server: LiveServer, written_logs: io.StringIO, owner: User
) -> None:
    secret = api_token_create(user=owner, name="in a query").secret
    tasks = f"{asgi_server.url}/api/v1/tasks"
    missing = f"{tasks}/00000000-0000-0000-0000-000000000000"

    refused = httpx2.get(f"{tasks}?token={secret}&limit=5", timeout=10)
    served = httpx2.get(f"{tasks}?token={secret}&limit=5", headers=bearer(secret), timeout=10)
    not_found = httpx2.get(f"{missing}?token={secret}", headers=bearer(secret), timeout=10)

    assert (refused.status_code, served.status_code, not_found.status_code) == (401, 200, 404)
    logged = written_logs.getvalue()
    assert "Unauthorized: /api/v1/tasks" in logged and "Not Found: /api/v1/tasks/" in logged
    assert 'GET /api/v1/tasks?token=[redacted]&limit=5 HTTP/1.1" 401' in logged
    assert 'GET /api/v1/tasks?token=[redacted]&limit=5 HTTP/1.1" 200' in logged
    assert "/api/v1/tasks?token=[redacted]&limit=5'>" in logged  # django.request's `request` field
    assert secret.split("_", 2)[2] not in logged
