"""Following a job's event stream (`GET /api/v1/tasks/{id}/events`, Server-Sent Events).

The server ends the stream after the job's terminal event. A stream that breaks before
that (a restart, a proxy's idle cut) is opened again with `Last-Event-ID`, so no event
is lost or seen twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
from httpx_sse import connect_sse

from backserv_client.errors import RETRY_STATUSES, ApiError, ConnectionFailed
from backserv_client.models import Event

# The server sends a keepalive comment every 15 s: a minute of silence is a dead stream.
STREAM_READ_TIMEOUT_SECONDS = 60.0


def follow_events(
    http: httpx.Client, path: str, *, last_event_id: int | None, timeout: float | None, retries: int
) -> Iterator[Event]:
    deadline = None if timeout is None else time.monotonic() + timeout
    last_id = last_event_id
    failures = 0
    while True:
        finished = False
        try:
            for event in _read_stream(http, path, last_id, _read_timeout(deadline)):
                failures = 0
                last_id = event.id
                finished = event.terminal
                yield event
                _check_deadline(deadline)
            if finished:
                return
            problem = "the stream ended before the job did"
        except httpx.TimeoutException as error:
            _check_deadline(deadline)
            problem = repr(error)
        except httpx.TransportError as error:
            problem = repr(error)
        except ApiError as error:
            if error.status not in RETRY_STATUSES:
                raise
            problem = str(error)
        failures += 1
        if failures > retries:
            raise ConnectionFailed(f"Following {path}: {problem} ({failures} times).")
        time.sleep(min(0.5 * 2 ** (failures - 1), 10.0))


def _read_timeout(deadline: float | None) -> httpx.Timeout:
    read = STREAM_READ_TIMEOUT_SECONDS
    if deadline is not None:
        read = max(min(read, deadline - time.monotonic()), 0.01)
    return httpx.Timeout(10.0, read=read)


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise TimeoutError("The job did not finish in time (it goes on running; wait again or cancel it).")


def _read_stream(http: httpx.Client, path: str, last_id: int | None, timeout: httpx.Timeout) -> Iterator[Event]:
    headers = {"Last-Event-ID": str(last_id)} if last_id else {}
    with connect_sse(http, "GET", path, headers=headers, timeout=timeout) as source:
        response = source.response
        if response.is_error:
            raise ApiError.from_response(response)
        for message in source.iter_sse():
            if message.data:
                yield Event.from_api(json.loads(message.data))
