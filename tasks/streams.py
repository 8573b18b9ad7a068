"""Live job events over Server-Sent Events and WebSockets, served as small ASGI apps
beside Django (backserv_site.asgi routes to them) so an open stream holds no thread:
it waits on change notices (tasks.notify) and reads the event log, the source of
truth, on the shared pool.

- GET /api/v1/tasks/{id}/events: SSE, `id:` = event id; `Last-Event-ID` (or
  `?last_event_id=`) resumes after that event; ends after the terminal event.
- /ws/tasks/{id}: the same events as JSON text frames; closes (1000) after the end.
- owner_events_websocket: every event of the caller's jobs from the moment of connecting
  (or after `?last_event_id=`), each as a message the route's document shapes; stays
  open. The routes that serve it are given to streams_router.

Token in `Authorization: Bearer` or `?token=` (browsers cannot set headers here).
WebSocket refusals close with 4401 (no or bad token, or one without the read scope) or
4404 (not your job).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs

from accounts.authentication import token_from_authorization, token_owner
from accounts.models import Scope, User
from accounts.permissions import token_scopes
from backserv_site.error_bodies import error_body
from tasks.events import event_payload
from tasks.models import TERMINAL_STATES, Task, TaskEvent
from tasks.notify import AsyncSubscription, BlockingSubscription, owner_key, poll_interval, task_key
from tasks.selectors import owner_events_after, owner_last_event_id, task_events_after
from tasks.waiting import run_db

TASK_EVENTS_PATH = re.compile(r"^/api/v1/tasks/(?P<task_id>[^/]+)/events/?$")
WS_TASK_PATH = re.compile(r"^/ws/tasks/(?P<task_id>[^/]+)/?$")
KEEPALIVE_SECONDS = 15.0
_BATCH = 500

AsgiApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
# A message of an owner's event stream, from one event (called in event order).
EventMessage = Callable[[TaskEvent], dict[str, Any]]


def sse_frame(event: TaskEvent) -> bytes:
    data = json.dumps(event_payload(event), separators=(",", ":"))
    return f"id: {event.pk}\nevent: {event.type}\ndata: {data}\n\n".encode()


def is_final_batch(events: list[TaskEvent]) -> bool:
    """The stream ends once the log's latest event is terminal (a job retried after
    failing has later events, so an old terminal event does not end a replay)."""
    return bool(events) and len(events) < _BATCH and events[-1].state in TERMINAL_STATES


def parse_event_id(raw: str | None) -> int | None:
    if raw is None or not raw.strip().isdigit():
        return None
    return int(raw.strip())


def owned_task_id(user: User, raw_task_id: str) -> uuid.UUID | None:
    try:
        task_id = uuid.UUID(raw_task_id)
    except ValueError:
        return None
    return task_id if Task.objects.filter(pk=task_id, owner=user).exists() else None


def _scope_user(scope: dict[str, Any]) -> User | None:
    headers = dict(scope.get("headers", []))
    raw: str | None = None
    if b"authorization" in headers:
        raw = token_from_authorization(headers[b"authorization"])
    else:
        raw = _query(scope).get("token")
    found = token_owner(raw) if raw else None
    # Streams are reads: a token without the read scope is refused like no token.
    return found[0] if found and Scope.READ in token_scopes(*found) else None


def _query(scope: dict[str, Any]) -> dict[str, str]:
    parsed = parse_qs(scope.get("query_string", b"").decode(errors="replace"))
    return {name: values[-1] for name, values in parsed.items()}


def _events_of_task(task_id: uuid.UUID, after_id: int) -> list[TaskEvent]:
    return task_events_after(task_id=task_id, after_id=after_id, limit=_BATCH)


def _task_exists(task_id: uuid.UUID) -> bool:
    return Task.objects.filter(pk=task_id).exists()


async def _until_disconnect(receive: Any, kind: str) -> None:
    while (await receive())["type"] != kind:
        pass


async def _wait(subscription: AsyncSubscription, timeout: float, disconnected: asyncio.Task) -> bool:
    """Wait for a notice, the timeout or the client leaving; True only on a notice."""
    waiter = asyncio.ensure_future(subscription.wait(timeout))
    await asyncio.wait({waiter, disconnected}, return_when=asyncio.FIRST_COMPLETED)
    if not waiter.done():
        waiter.cancel()
        return False
    return waiter.result()


# Server-Sent Events -------------------------------------------------------------------


async def _send_error(send: Any, status: int, detail: str, code: str) -> None:
    body = json.dumps(error_body(detail=detail, code=code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="api"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def task_events_sse(scope: dict[str, Any], receive: Any, send: Any, raw_task_id: str) -> None:
    user = await run_db(_scope_user, scope)
    if user is None:
        await _send_error(
            send, 401, "Authentication credentials were not provided or are invalid.", "not_authenticated"
        )
        return
    task_id = await run_db(owned_task_id, user, raw_task_id)
    if task_id is None:
        await _send_error(send, 404, f"Task {raw_task_id} not found.", "not_found")
        return
    headers = dict(scope.get("headers", []))
    last_id = parse_event_id(headers.get(b"last-event-id", b"").decode() or _query(scope).get("last_event_id")) or 0
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no"),
            ],
        }
    )
    disconnected = asyncio.ensure_future(_until_disconnect(receive, "http.disconnect"))
    try:
        async with AsyncSubscription([task_key(task_id)]) as subscription:
            quiet_since = time.monotonic()
            while not disconnected.done():
                events = await run_db(_events_of_task, task_id, last_id)
                if events:
                    last_id = events[-1].pk
                    quiet_since = time.monotonic()
                    await send(
                        {"type": "http.response.body", "body": b"".join(map(sse_frame, events)), "more_body": True}
                    )
                    if is_final_batch(events):
                        break
                    continue
                if not await _wait(subscription, min(poll_interval(), KEEPALIVE_SECONDS), disconnected):
                    if not await run_db(_task_exists, task_id):
                        break
                    if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                        quiet_since = time.monotonic()
                        await send({"type": "http.response.body", "body": b": keepalive\n\n", "more_body": True})
    finally:
        disconnected.cancel()
    await send({"type": "http.response.body", "body": b""})


def task_events_sse_blocking(task_id: uuid.UUID, last_id: int) -> Iterator[bytes]:
    """The same stream for WSGI servers (holds the request's thread)."""
    with BlockingSubscription([task_key(task_id)]) as subscription:
        while True:
            events = _events_of_task(task_id, last_id)
            if events:
                last_id = events[-1].pk
                yield b"".join(map(sse_frame, events))
                if is_final_batch(events):
                    return
                continue
            if not subscription.wait(min(poll_interval(), KEEPALIVE_SECONDS)):
                if not _task_exists(task_id):
                    return
                yield b": keepalive\n\n"


# WebSockets -------------------------------------------------------------------------


async def task_events_websocket(scope: dict[str, Any], receive: Any, send: Any, raw_task_id: str) -> None:
    """/ws/tasks/{id}: the job's events as event_payload shapes them; closes after the end."""
    if (await receive())["type"] != "websocket.connect":
        return
    user = await run_db(_scope_user, scope)
    after = parse_event_id(_query(scope).get("last_event_id")) or 0
    # Accepted first, then refused with a code: a browser sees close codes, not the
    # HTTP status of a failed handshake.
    await send({"type": "websocket.accept"})
    if user is None:
        await send({"type": "websocket.close", "code": 4401, "reason": "Authentication required."})
        return
    task_id = await run_db(owned_task_id, user, raw_task_id)
    if task_id is None:
        await send({"type": "websocket.close", "code": 4404, "reason": "Task not found."})
        return

    def fetch(after_id: int) -> list[TaskEvent]:
        return _events_of_task(task_id, after_id)

    await _send_events(
        receive, send, keys=[task_key(task_id)], fetch=fetch, after=after, message=event_payload, close_at_end=True
    )


async def owner_events_websocket(scope: dict[str, Any], receive: Any, send: Any, *, message: EventMessage) -> None:
    """Every event of the caller's jobs, from the moment of connecting or after
    `?last_event_id=`, each as `message` makes it; stays open until the client leaves."""
    if (await receive())["type"] != "websocket.connect":
        return
    user = await run_db(_scope_user, scope)
    after = parse_event_id(_query(scope).get("last_event_id"))
    if user is not None and after is None:
        # Read before accepting: whatever happens once the client is connected is sent.
        after = await run_db(lambda: owner_last_event_id(owner_id=user.pk))
    await send({"type": "websocket.accept"})
    if user is None:
        await send({"type": "websocket.close", "code": 4401, "reason": "Authentication required."})
        return

    def fetch(after_id: int) -> list[TaskEvent]:
        return owner_events_after(owner_id=user.pk, after_id=after_id, limit=_BATCH)

    await _send_events(
        receive, send, keys=[owner_key(user.pk)], fetch=fetch, after=after or 0, message=message, close_at_end=False
    )


async def _send_events(
    receive: Any,
    send: Any,
    *,
    keys: list[str],
    fetch: Callable[[int], list[TaskEvent]],
    after: int,
    message: EventMessage,
    close_at_end: bool,
) -> None:
    """Each event after `after` as a text frame, then each new one as it comes, until the
    client leaves (or, with close_at_end, the stream's end: closed 1000)."""
    last_id = after
    disconnected = asyncio.ensure_future(_until_disconnect(receive, "websocket.disconnect"))
    try:
        async with AsyncSubscription(keys) as subscription:
            while not disconnected.done():
                events = await run_db(fetch, last_id)
                for event in events:
                    await send({"type": "websocket.send", "text": json.dumps(message(event))})
                if events:
                    last_id = events[-1].pk
                    if close_at_end and is_final_batch(events):
                        await send({"type": "websocket.close", "code": 1000})
                        return
                    continue
                await _wait(subscription, poll_interval(), disconnected)
    finally:
        disconnected.cancel()


async def _unknown_websocket(receive: Any, send: Any) -> None:
    if (await receive())["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 4404, "reason": "No such stream."})


def streams_router(django_app: Any, websocket_routes: Sequence[tuple[re.Pattern[str], AsgiApp]] = ()) -> Any:
    """The project's ASGI application: streams here, everything else to Django
    (submits through SyncWaitMiddleware). `websocket_routes` are other WebSocket routes
    by path (e.g. a document's feed over owner_events_websocket)."""
    from tasks.waiting import SyncWaitMiddleware

    http_app = SyncWaitMiddleware(django_app)

    async def websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
        task_match = WS_TASK_PATH.match(scope["path"])
        if task_match is not None:
            await task_events_websocket(scope, receive, send, task_match["task_id"])
            return
        for path, route in websocket_routes:
            if path.match(scope["path"]):
                await route(scope, receive, send)
                return
        await _unknown_websocket(receive, send)

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await websocket(scope, receive, send)
            return
        if scope["type"] == "http" and scope["method"] == "GET":
            match = TASK_EVENTS_PATH.match(scope["path"])
            if match is not None:
                await task_events_sse(scope, receive, send, match["task_id"])
                return
        await http_app(scope, receive, send)

    return application
