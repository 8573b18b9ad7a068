"""The fleet shape: the API under uvicorn and a separate `manage.py rundramatiq` worker
process, sharing the test database and a real broker (Redis, RabbitMQ), driven over HTTP.

Runs when the broker is configured: BROKER_URL (kept as settings.E2E_BROKER_URL) and,
for RabbitMQ, E2E_AMQP_URL. `.ci/run` sets both.
"""

from __future__ import annotations

import io
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from PIL import Image

from accounts.models import User
from accounts.services import api_token_create
from tests.e2e.processes import Api, Process, free_port, healthy, process_env, processes_database_url, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _unsigned(result: dict[str, Any]) -> dict[str, Any]:
    """A job result with its download links cut before their signature."""
    outputs = [{**item, "url": item["url"].split("?")[0]} for item in result["outputs"]]
    return {**result, "url": result["url"].split("?")[0], "outputs": outputs}


def _broker_urls() -> list[object]:
    configured = {
        "redis": settings.E2E_BROKER_URL if settings.E2E_BROKER_URL.startswith("redis") else "",
        "rabbitmq": os.environ.get("E2E_AMQP_URL", "")
        or (settings.E2E_BROKER_URL if settings.E2E_BROKER_URL.startswith("amqp") else ""),
    }
    return [
        pytest.param(url, id=name, marks=pytest.mark.skipif(not url, reason=f"no {name} broker configured"))
        for name, url in configured.items()
    ]


def _delete_rabbitmq_queues(url: str, queue_name: str) -> None:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for name in (queue_name, f"{queue_name}.DQ", f"{queue_name}.XQ"):
            channel.queue_delete(name)
    finally:
        connection.close()


@pytest.fixture(params=_broker_urls())
def fleet(request: pytest.FixtureRequest, transactional_db: None, tmp_path: Path, demo_models: Path) -> Iterator[Api]:
    broker_url: str = request.param
    queue_name = f"e2e-{uuid.uuid4().hex[:12]}"
    env = process_env(
        DATABASE_URL=processes_database_url(),
        BROKER_URL=broker_url,
        BACKSERV_QUEUE=queue_name,
        BACKSERV_VAR_DIR=str(tmp_path / "var"),
        MEDIA_ROOT=str(tmp_path / "media"),
        MODEL_IMAGE_CREATION=str(demo_models / "tiny-sd"),
        # Every process of a fleet shares the key that API tokens are hashed with.
        SECRET_KEY=settings.SECRET_KEY,
    )
    user = User.objects.create_user(username="fleet-user")
    token = api_token_create(user=user).secret
    port = free_port()
    api_server = Process(
        [sys.executable, "-m", "uvicorn", "backserv_site.asgi:application", "--port", str(port), "--workers", "2"],
        env,
        tmp_path / "api.log",
    )
    worker = Process(
        [sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads", "2"],
        env,
        tmp_path / "worker.log",
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(base_url), timeout=60, what="the API server", process=api_server)
        api = Api(base_url, token)
        api.worker = worker  # type: ignore[attr-defined]
        yield api
    finally:
        worker.stop()
        api_server.stop()
        if broker_url.startswith("amqp"):
            _delete_rabbitmq_queues(broker_url, queue_name)


def test_a_job_goes_through_the_fleet_to_a_png(fleet: Api) -> None:
    health = requests.get(f"{fleet.base_url}/health", timeout=5).json()
    assert health["checks"] == {"database": "ok", "broker": "ok"}

    started = time.monotonic()
    task_id = fleet.submit(width=64, height=64, steps=4, seed=7)["task_id"]
    job = fleet.wait_state(task_id, {"SUCCESS", "FAILURE"}, timeout=90, process=fleet.worker)  # type: ignore[attr-defined]
    print(f"\ndistributed submit -> SUCCESS: {time.monotonic() - started:.2f}s (first job, worker cold)")
    assert job["state"] == "SUCCESS", job

    timings = []
    for seed in (7, 8, 9):
        started = time.monotonic()
        again = fleet.wait_state(
            fleet.submit(width=64, height=64, steps=4, seed=seed)["task_id"], {"SUCCESS"}, timeout=30
        )
        timings.append(time.monotonic() - started)
    print(f"distributed submit -> SUCCESS warm: {', '.join(f'{t:.2f}s' for t in timings)}")

    png = requests.get(job["result"]["url"], timeout=10)
    assert png.status_code == 200
    assert Image.open(io.BytesIO(png.content)).size == (64, 64)
    first_again = fleet.job(task_id)
    # Each read signs its download links afresh; what they point at does not change.
    assert _unsigned(first_again["result"]) == _unsigned(job["result"])
    assert again["result"]["outputs"][0]["url"] != job["result"]["outputs"][0]["url"]


def test_cancel_reaches_a_job_running_in_another_process(fleet: Api) -> None:
    task_id = fleet.submit(width=128, height=128, steps=100, seed=1)["task_id"]

    def running() -> bool:
        job = fleet.job(task_id)
        return job["state"] == "STARTED" and job["progress"] > 0

    wait_until(running, timeout=90, what="the job to run", process=fleet.worker)  # type: ignore[attr-defined]
    response = fleet.session.post(f"{fleet.base_url}/api/v1/tasks/{task_id}/cancel", timeout=10)
    assert response.status_code == 200
    job = fleet.wait_state(task_id, {"REVOKED", "SUCCESS", "FAILURE"}, timeout=30)
    assert job["state"] == "REVOKED"
    assert job["result"] is None
