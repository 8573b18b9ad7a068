"""Sync submits: answer when the job finishes (200) or when the wait runs out (202).

Under ASGI no thread is held while a request waits. Django's handler keeps a thread
for each request until it returns (its middleware is sync), so the submit view does not
wait itself: it answers 202 with an internal header naming the job and the seconds to
wait, Django returns, and `SyncWaitMiddleware`, outside Django, waits on change notices
(tasks.notify) and sends the job as it then stands. Database reads run on a small
shared thread pool, never on a thread of the request's own.

Under WSGI (gunicorn's sync workers) every request holds a thread anyway, and the view
waits there (`wait_until_finished_blocking`).
"""

from __future__ import annotations

import io
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from rest_framework.renderers import JSONRenderer

from backserv_site.db import connection_work
from tasks.models import TERMINAL_STATES, Task
from tasks.notify import AsyncSubscription, BlockingSubscription, poll_interval, task_key

# Set by the submit view, removed by SyncWaitMiddleware: "<task id> <seconds>".
WAIT_HEADER = "X-Backserv-Wait"
_WAIT_HEADER = WAIT_HEADER.lower().encode()

Result = TypeVar("Result")
ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def _fresh_connection(function: Callable[..., Result]) -> Callable[..., Result]:
    def call(*args: Any) -> Result:
        # Executor threads outlive requests: each read is a unit of work of its own.
        with connection_work():
            return function(*args)

    return call


async def run_db(function: Callable[..., Result], *args: Any) -> Result:
    """Run a database read on the shared pool (not a per-request thread)."""
    return await sync_to_async(_fresh_connection(function), thread_sensitive=False)(*args)


def _task_finished(task_id: UUID | str) -> bool | None:
    """True when terminal, False when not, None when the job is gone."""
    state = Task.objects.filter(pk=task_id).values_list("state", flat=True).first()
    return None if state is None else state in TERMINAL_STATES


async def wait_until_finished(task_id: UUID | str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    # Subscribed before the first read: a change in between still wakes the wait.
    async with AsyncSubscription([task_key(task_id)]) as subscription:
        while True:
            finished = await run_db(_task_finished, task_id)
            if finished is not False:
                return bool(finished)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await subscription.wait(min(remaining, poll_interval()))


def wait_until_finished_blocking(task_id: UUID | str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    with BlockingSubscription([task_key(task_id)]) as subscription:
        while True:
            finished = _task_finished(task_id)
            if finished is not False:
                return bool(finished)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            subscription.wait(min(remaining, poll_interval()))


def _render_task(scope: dict[str, Any], task_id: str) -> bytes | None:
    from tasks.api.serializers import TaskSerializer

    task = Task.objects.filter(pk=task_id).first()
    if task is None:
        return None
    # The request only lends its host and scheme to the result's absolute URLs.
    request = ASGIRequest(scope, io.BytesIO())
    return JSONRenderer().render(TaskSerializer(task, context={"request": request}).data)


class SyncWaitMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        held: list[dict[str, Any]] = []
        wait: tuple[str, float] | None = None

        async def hold_if_waiting(message: dict[str, Any]) -> None:
            nonlocal wait
            if message["type"] == "http.response.start":
                # Django keeps header names' case; ASGI servers compare them lowercased.
                headers = [(name, value) for name, value in message.get("headers", []) if name.lower() != _WAIT_HEADER]
                marker = [value for name, value in message.get("headers", []) if name.lower() == _WAIT_HEADER]
                if marker:
                    task_id, seconds = marker[0].decode().split()
                    wait = (task_id, float(seconds))
                message = {**message, "headers": headers}
            if wait is not None:
                held.append(message)
            else:
                await send(message)

        await self.app(scope, receive, hold_if_waiting)
        if wait is None:
            return
        task_id, seconds = wait
        finished = await wait_until_finished(task_id, seconds)
        body = await run_db(_render_task, scope, task_id)
        if body is None:
            for message in held:
                await send(message)
            return
        start = held[0]
        headers = [(name, value) for name, value in start["headers"] if name.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200 if finished else 202, "headers": headers})
        await send({"type": "http.response.body", "body": body})
