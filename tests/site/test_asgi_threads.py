"""Under ASGI the whole middleware stack and the view run on one thread.

Django runs a MiddlewareMixin in async mode when everything inside it is async, and
then each of its hooks hops to a thread and back: with our stack that was about 20
hops a request, and a constant JSON view ran several times slower under load. A
sync-only middleware innermost (rate_limit_headers_middleware) keeps the stack sync."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref import sync
from asgiref.testing import ApplicationCommunicator
from django.core.handlers.asgi import ASGIHandler
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db(transaction=True)

# Django 5.2's own, with the stack sync: 8 (into the stack, back out for the handler's
# async core, into the view, the request signals, the response's close). With the
# MiddlewareMixins running async it was 20.
MOST_HOPS_PER_REQUEST = 10


def _get(path: str, token: str) -> dict[str, Any]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }

    async def request() -> dict[str, Any]:
        communicator = ApplicationCommunicator(ASGIHandler(), scope)
        await communicator.send_input({"type": "http.request", "body": b""})
        start = await communicator.receive_output(10)
        await communicator.receive_output(10)
        return start

    return sync.async_to_sync(request)()


def test_a_request_through_the_api_takes_a_handful_of_thread_hops(
    client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops: list[str] = []
    for adapter in (sync.SyncToAsync, sync.AsyncToSync):
        original = adapter.__call__

        def counted(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            hops.append(type(self).__name__)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(adapter, "__call__", counted)
    _get("/api/v1/tasks", client.token)  # warm: Django loads the stack on first use
    hops.clear()

    start = _get("/api/v1/tasks", client.token)

    assert start["status"] == 200
    # The one AsyncToSync is _get(); the rest are Django's.
    assert len(hops) - 1 <= MOST_HOPS_PER_REQUEST, hops
