"""Live events: SSE with replay after reconnecting, WebSockets per job and per owner."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
import websockets
from asgiref.sync import sync_to_async
from rest_framework.test import APIClient
from websockets.asyncio.client import connect

from tasks.models import TaskEvent
from tests.client.conftest import LiveServer, bearer
from tests.conftest import InProcessWorker


def parse_sse(text: str) -> list[dict[str, Any]]:
    frames = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if fields:
            frames.append({"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])})
    return frames


async def read_sse(
    http: httpx2.AsyncClient, path: str, headers: dict[str, str], *, stop_after: int | None = None
) -> list[dict[str, Any]]:
    """Frames of the stream until it ends (or until `stop_after` frames, then hang up)."""
    frames: list[dict[str, Any]] = []
    buffer = ""
    async with http.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for chunk in response.aiter_text():
            buffer += chunk
            complete, _, buffer = buffer.rpartition("\n\n")
            frames.extend(parse_sse(complete))
            if stop_after is not None and len(frames) >= stop_after:
                return frames
    return frames


def submit(client: APIClient, body: dict[str, Any]) -> str:
    response = client.post("/api/v1/tasks", body, format="json")
    assert response.status_code == 202, response.content
    return response.json()["task_id"]


def test_sse_streams_progress_and_replays_what_was_missed_after_a_reconnect(
    asgi_server: LiveServer,
    stopped_worker: InProcessWorker,
    client: APIClient,
    owner_token: str,
    job_body: Callable[..., dict],
) -> None:
    task_id = submit(client, job_body())
    path = f"/api/v1/tasks/{task_id}/events"

    async def follow() -> tuple[list, list]:
        async with httpx2.AsyncClient(base_url=asgi_server.url, timeout=60) as http:
            # The job is queued; the stream has its first event and waits for more.
            first = await read_sse(http, path, bearer(owner_token), stop_after=1)
            await sync_to_async(stopped_worker.start, thread_sensitive=False)()
            await asyncio.sleep(0.2)
            rest = await read_sse(http, path, {**bearer(owner_token), "Last-Event-ID": str(first[-1]["id"])})
            return first, rest

    first, rest = asyncio.run(follow())

    logged = list(TaskEvent.objects.filter(task_id=task_id).values_list("id", "type"))
    assert [(frame["id"], frame["event"]) for frame in first + rest] == logged
    assert first[0]["event"] == "submitted"
    assert rest[-1]["event"] == "succeeded" and rest[-1]["data"]["state"] == "SUCCESS"
    progress = [frame["data"] for frame in rest if frame["event"] == "progress"]
    assert progress and progress[-1]["step"] == progress[-1]["total"] == 4
    assert all(frame["data"]["task_id"] == task_id for frame in first + rest)


def test_sse_replays_a_finished_job_and_ends(
    asgi_server: LiveServer, worker: InProcessWorker, client: APIClient, owner_token: str, job_body: Callable
) -> None:
    task_id = submit(client, job_body())
    worker.wait_for(task_id)

    async def replay() -> list:
        async with httpx2.AsyncClient(base_url=asgi_server.url, timeout=30) as http:
            return await read_sse(http, f"/api/v1/tasks/{task_id}/events?token={owner_token}", {})

    frames = asyncio.run(replay())

    assert [frame["id"] for frame in frames] == list(
        TaskEvent.objects.filter(task_id=task_id).values_list("id", flat=True)
    )
    assert frames[-1]["event"] == "succeeded"


@pytest.mark.parametrize("token", [None, "bs_deadbeef_nope"])
def test_sse_refuses_a_missing_or_bad_token(
    asgi_server: LiveServer, stopped_worker: InProcessWorker, client: APIClient, job_body: Callable, token: str | None
) -> None:
    task_id = submit(client, job_body())
    headers = bearer(token) if token else {}

    response = httpx2.get(f"{asgi_server.url}/api/v1/tasks/{task_id}/events", headers=headers, timeout=10)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_sse_hides_another_users_job(
    asgi_server: LiveServer, stopped_worker: InProcessWorker, client: APIClient, other_token: str, job_body: Callable
) -> None:
    task_id = submit(client, job_body())

    response = httpx2.get(f"{asgi_server.url}/api/v1/tasks/{task_id}/events", headers=bearer(other_token), timeout=10)

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_the_wsgi_event_stream_replays_after_last_event_id(
    worker: InProcessWorker, client: APIClient, other_client: APIClient, anonymous_client: APIClient, job_body: Callable
) -> None:
    task_id = submit(client, job_body())
    worker.wait_for(task_id)
    logged = list(TaskEvent.objects.filter(task_id=task_id).values_list("id", flat=True))

    response = client.get(f"/api/v1/tasks/{task_id}/events", HTTP_LAST_EVENT_ID=str(logged[1]))
    frames = parse_sse(b"".join(response.streaming_content).decode())

    assert [frame["id"] for frame in frames] == logged[2:]
    assert other_client.get(f"/api/v1/tasks/{task_id}/events").status_code == 404
    assert anonymous_client.get(f"/api/v1/tasks/{task_id}/events").status_code == 401


def test_the_wsgi_event_stream_answers_its_errors_as_json_to_an_event_stream_client(
    client: APIClient, other_client: APIClient, anonymous_client: APIClient, job_body: Callable
) -> None:
    # As documented, and as the ASGI route answers: an SSE client reading the error
    # must not be told it is an event stream.
    task_id = submit(client, job_body())
    url = f"/api/v1/tasks/{task_id}/events"

    for caller, status in ((other_client, 404), (anonymous_client, 401)):
        response = caller.get(url, HTTP_ACCEPT="text/event-stream")
        assert response.status_code == status
        assert response["Content-Type"] == "application/json"
        assert response.json()["code"] in {"not_found", "not_authenticated"}


def test_a_task_websocket_carries_its_events_and_closes_after_the_end(
    asgi_server: LiveServer, stopped_worker: InProcessWorker, client: APIClient, owner_token: str, job_body: Callable
) -> None:
    task_id = submit(client, job_body())

    async def follow() -> tuple[list, int | None]:
        async with connect(f"{asgi_server.ws_url}/ws/tasks/{task_id}?token={owner_token}") as socket:
            messages = [json.loads(await socket.recv())]
            await sync_to_async(stopped_worker.start, thread_sensitive=False)()
            try:
                while True:
                    messages.append(json.loads(await asyncio.wait_for(socket.recv(), 60)))
            except websockets.ConnectionClosedOK as closed:
                return messages, closed.rcvd.code if closed.rcvd else None

    messages, close_code = asyncio.run(follow())

    assert close_code == 1000
    assert [message["id"] for message in messages] == list(
        TaskEvent.objects.filter(task_id=task_id).values_list("id", flat=True)
    )
    assert messages[-1]["state"] == "SUCCESS"
    assert any(message["type"] == "progress" and message["total"] == 4 for message in messages)


def test_the_generation_websocket_carries_every_job_of_its_owner(
    asgi_server: LiveServer,
    worker: InProcessWorker,
    client: APIClient,
    other_client: APIClient,
    owner_token: str,
    job_body: Callable,
) -> None:
    async def follow() -> list:
        async with connect(f"{asgi_server.ws_url}/ws/generation", additional_headers=bearer(owner_token)) as socket:
            own = await sync_to_async(submit, thread_sensitive=False)(client, job_body())
            await sync_to_async(submit, thread_sensitive=False)(other_client, job_body())
            messages = []
            while not any(message["task_id"] == own and message["state"] == "SUCCESS" for message in messages):
                messages.append(json.loads(await asyncio.wait_for(socket.recv(), 60)))
            return messages

    messages = asyncio.run(follow())

    assert {message["task_id"] for message in messages} == {messages[0]["task_id"]}
    assert messages[0]["event"] == "submitted"
    # The studio document's shape: {type: "progress", taskId, progress 0-100, status}.
    assert {message["type"] for message in messages} == {"progress"}
    assert {message["taskId"] for message in messages} == {messages[0]["task_id"]}
    assert (messages[0]["status"], messages[0]["progress"]) == ("queued", 0.0)
    assert (messages[-1]["status"], messages[-1]["progress"]) == ("completed", 100.0)
    running = [message for message in messages if message["event"] == "progress"]
    assert running and all(message["status"] == "generating" for message in running)
    assert [message["progress"] for message in running] == sorted(message["progress"] for message in running)
    assert 0 < running[0]["progress"] <= 100


@pytest.mark.parametrize(("path", "token_name", "code"), [("tasks", None, 4401), ("tasks", "other", 4404)])
def test_a_websocket_refuses_a_missing_token_and_another_users_job(
    asgi_server: LiveServer,
    stopped_worker: InProcessWorker,
    client: APIClient,
    other_token: str,
    job_body: Callable,
    path: str,
    token_name: str | None,
    code: int,
) -> None:
    task_id = submit(client, job_body())
    query = f"?token={other_token}" if token_name else ""

    async def refused() -> int | None:
        async with connect(f"{asgi_server.ws_url}/ws/{path}/{task_id}{query}") as socket:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), 10)
            return closed.value.rcvd.code if closed.value.rcvd else None

    assert asyncio.run(refused()) == code
