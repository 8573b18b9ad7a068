"""Sync submits: `Prefer: wait=N` / `"sync": true` answer 200 with the finished job,
or 202 with the job as it stands when the wait runs out, holding no thread meanwhile."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from rest_framework.test import APIClient

from tasks.models import Task, TaskState
from tasks.notify import hub
from tests.client.conftest import LiveServer, bearer
from tests.conftest import InProcessWorker


def post_job(server: LiveServer, token: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    with httpx2.Client(base_url=server.url, timeout=120) as http:
        return http.post("/api/v1/tasks", json=body, headers={**bearer(token), **(headers or {})})


def test_it_answers_200_with_the_finished_job_when_it_finishes_within_the_wait(
    asgi_server: LiveServer, worker: InProcessWorker, owner_token: str, job_body: Callable[..., dict]
) -> None:
    response = post_job(asgi_server, owner_token, job_body(), {"Prefer": "wait=60"})

    assert response.status_code == 200, response.text
    job = response.json()
    assert job["state"] == "SUCCESS"
    assert job["result"]["url"].startswith(asgi_server.url + "/media/")
    assert response.headers["location"] == f"/api/v1/tasks/{job['task_id']}"
    assert "x-backserv-wait" not in response.headers


def test_sync_true_in_the_body_waits_too(
    asgi_server: LiveServer, worker: InProcessWorker, owner_token: str, job_body: Callable[..., dict]
) -> None:
    response = post_job(asgi_server, owner_token, job_body(sync=True))

    assert response.status_code == 200, response.text
    assert response.json()["state"] == "SUCCESS"


def test_it_answers_202_with_the_job_as_it_stands_when_the_wait_runs_out(
    asgi_server: LiveServer, stopped_worker: InProcessWorker, owner_token: str, job_body: Callable[..., dict]
) -> None:
    started = time.monotonic()
    response = post_job(asgi_server, owner_token, job_body(), {"Prefer": "wait=1"})

    assert response.status_code == 202, response.text
    assert response.json()["state"] == "PENDING"
    assert response.json()["queue_position"] == 0
    assert time.monotonic() - started >= 1.0
    assert "x-backserv-wait" not in response.headers


def test_it_does_not_wait_without_asking(
    asgi_server: LiveServer, stopped_worker: InProcessWorker, owner_token: str, job_body: Callable[..., dict]
) -> None:
    response = post_job(asgi_server, owner_token, job_body())

    assert response.status_code == 202
    assert response.json()["state"] == "PENDING"


@pytest.mark.parametrize("prefer", ["wait=301", "wait=-1", "wait=soon"])
def test_it_refuses_a_bad_wait_naming_the_prefer_header(
    asgi_server: LiveServer,
    stopped_worker: InProcessWorker,
    owner_token: str,
    job_body: Callable[..., dict],
    prefer: str,
) -> None:
    response = post_job(asgi_server, owner_token, job_body(), {"Prefer": prefer})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert "Prefer" in response.json()["fields"]
    assert not Task.objects.exists()


def test_it_refuses_a_sync_submit_without_a_token(
    asgi_server: LiveServer, stopped_worker: InProcessWorker, job_body: Callable[..., dict]
) -> None:
    with httpx2.Client(base_url=asgi_server.url, timeout=30) as http:
        response = http.post("/api/v1/tasks", json=job_body(sync=True))

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_a_wsgi_server_waits_in_the_request_thread(
    worker: InProcessWorker, client: APIClient, job_body: Callable[..., dict]
) -> None:
    response = client.post("/api/v1/tasks", job_body(), format="json", HTTP_PREFER="wait=60")

    assert response.status_code == 200, response.content
    assert response.json()["state"] == "SUCCESS"


@pytest.mark.slow
def test_a_hundred_concurrent_sync_waits_hold_no_thread_each(
    asgi_server: LiveServer, stopped_worker: InProcessWorker, owner_token: str, job_body: Callable[..., dict]
) -> None:
    count = 100
    baseline_threads = threading.active_count()
    peak_while_waiting = 0

    async def submit_all() -> list[Any]:
        nonlocal peak_while_waiting
        limits = httpx2.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
        async with httpx2.AsyncClient(base_url=asgi_server.url, timeout=240, limits=limits) as http:
            requests: list[asyncio.Task] = []
            deadline = time.monotonic() + 120
            # In waves, so at most a wave of submits is inside Django (a thread and a
            # database connection each) at once; the waits then pile up to 100.
            for wave in range(0, count, 10):
                requests += [
                    asyncio.create_task(
                        http.post(
                            "/api/v1/tasks",
                            json=job_body(params={"prompt": f"job {n}", "width": 64, "height": 64, "steps": 1}),
                            headers={**bearer(owner_token), "Prefer": "wait=240"},
                        )
                    )
                    for n in range(wave, wave + 10)
                ]
                # The jobs cannot run yet (no worker): every request parks waiting.
                while hub.waiting_count() < len(requests):
                    assert time.monotonic() < deadline, f"only {hub.waiting_count()} requests waiting"
                    assert not any(request.done() for request in requests), "a request answered before its job ran"
                    await asyncio.sleep(0.02)
            for _ in range(10):
                peak_while_waiting = max(peak_while_waiting, threading.active_count())
                await asyncio.sleep(0.05)
            stopped_worker.threads = 2
            await asyncio.get_running_loop().run_in_executor(None, stopped_worker.start)
            return await asyncio.gather(*requests)

    responses = asyncio.run(submit_all())

    assert [response.status_code for response in responses] == [200] * count
    assert {response.json()["state"] for response in responses} == {TaskState.SUCCESS}
    assert len({response.json()["task_id"] for response in responses}) == count
    # 100 parked requests: only the shared pools' threads, never one per request.
    assert peak_while_waiting - baseline_threads < 40, (baseline_threads, peak_while_waiting)
