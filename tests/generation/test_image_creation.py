"""Text-to-image jobs run for real through the in-process Dramatiq worker on the tiny
demo model, and the API serves their output."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

from django.core.files.storage import default_storage
from PIL import Image
from rest_framework.test import APIClient

from generation.actors import run_task
from tasks import services
from tasks.models import Task, TaskEvent, TaskState
from tests.conftest import InProcessWorker


def _png_at(client: APIClient, url: str) -> bytes:
    response = client.get(url)
    assert response.status_code == 200
    data = b"".join(response.streaming_content) if response.streaming else response.content
    return data


def wait_for_progress(task_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not Task.objects.filter(pk=task_id, state=TaskState.STARTED, progress__gt=0).exists():
        assert time.monotonic() < deadline, f"task {task_id} made no progress in {timeout}s"
        time.sleep(0.01)


def test_a_job_runs_to_success_and_serves_a_png(
    worker: InProcessWorker, client: APIClient, submit: Callable[..., dict[str, Any]]
) -> None:
    task_id = submit()["task_id"]
    worker.wait_for(task_id)

    job = client.get(f"/api/v1/tasks/{task_id}").json()
    assert job["state"] == "SUCCESS", job
    assert job["progress"] == 1.0
    assert job["started_at"] and job["completed_at"]
    assert job["attempts"] == 1
    output = job["result"]["outputs"][0]
    assert output["content_type"] == "image/png"
    assert (output["width"], output["height"]) == (64, 64)
    assert job["result"]["url"] == output["url"]
    assert output["url"].startswith("http://testserver/")
    assert job["result"]["seed"] == 7

    data = _png_at(client, output["url"])
    assert len(data) == output["size"]
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.size == (64, 64)


def test_progress_rises_step_by_step_to_one(worker: InProcessWorker, submit: Callable[..., dict[str, Any]]) -> None:
    task_id = submit(steps=5)["task_id"]
    worker.wait_for(task_id)
    events = list(TaskEvent.objects.filter(task_id=task_id).values_list("type", "data"))
    assert [kind for kind, _ in events if kind != "progress"] == ["submitted", "claimed", "started", "succeeded"]
    progress = [data["progress"] for kind, data in events if kind == "progress"]
    assert progress == [0.2, 0.4, 0.6, 0.8, 1.0]


def test_the_same_seed_gives_the_same_bytes_and_another_seed_does_not(
    worker: InProcessWorker, client: APIClient, submit: Callable[..., dict[str, Any]], settings: Any
) -> None:
    # Byte for byte only in the same batch shape: batched kernels round differently
    # (tests/generation/test_batching.py holds batched jobs to their solo images).
    settings.GENERATION = {**settings.GENERATION, "DYNAMIC_BATCH_SIZE": 1}
    first, second, other = submit(seed=7)["task_id"], submit(seed=7)["task_id"], submit(seed=8)["task_id"]
    worker.drain()
    images = [
        _png_at(client, client.get(f"/api/v1/tasks/{task_id}").json()["result"]["url"])
        for task_id in (first, second, other)
    ]
    assert images[0] == images[1]
    assert images[0] != images[2]


def test_several_images_in_one_job(worker: InProcessWorker, submit: Callable[..., dict[str, Any]]) -> None:
    task_id = submit(num_images=3)["task_id"]
    task = worker.wait_for(task_id)
    assert task.state == TaskState.SUCCESS
    outputs = task.result["outputs"]
    assert len(outputs) == 3
    assert len({default_storage.open(item["path"]).read() for item in outputs}) == 3


def test_cancel_stops_a_running_job_within_a_step(
    worker: InProcessWorker, client: APIClient, submit: Callable[..., dict[str, Any]]
) -> None:
    task_id = submit(steps=100, width=128, height=128)["task_id"]
    wait_for_progress(task_id)
    assert client.post(f"/api/v1/tasks/{task_id}/cancel").status_code == 200
    task = worker.wait_for(task_id)

    assert task.state == TaskState.REVOKED
    assert task.result is None
    steps_seen = [e.data["step"] for e in task.events.filter(type="progress")]
    assert steps_seen and max(steps_seen) < 100
    assert not default_storage.exists(f"outputs/{task_id}/1-0.png")


def test_a_message_for_a_job_that_cannot_be_claimed_does_nothing(
    worker: InProcessWorker, submit: Callable[..., dict[str, Any]]
) -> None:
    task_id = submit()["task_id"]
    worker.wait_for(task_id)
    events_before = TaskEvent.objects.filter(task_id=task_id).count()
    run_task.send(task_id)  # a duplicate, late or redelivered message
    worker.drain()
    task = Task.objects.get(pk=task_id)
    assert task.state == TaskState.SUCCESS and task.attempts == 1
    assert TaskEvent.objects.filter(task_id=task_id).count() == events_before


def test_higher_priority_jobs_run_first_whatever_the_message_order(
    stopped_worker: InProcessWorker, submit: Callable[..., dict[str, Any]]
) -> None:
    low = [submit(priority=1)["task_id"] for _ in range(3)]
    high = submit(priority=9)["task_id"]
    stopped_worker.start()
    stopped_worker.drain()
    started = {
        task_id: Task.objects.get(pk=task_id).started_at
        for task_id in [*low, high]  # one worker thread: start order is run order
    }
    assert all(Task.objects.get(pk=task_id).state == TaskState.SUCCESS for task_id in started)
    assert started[high] == min(started.values())
    assert sorted(low, key=started.__getitem__) == low


def test_a_pipeline_error_is_a_failure_with_a_code(worker: InProcessWorker, settings: Any, owner: Any) -> None:
    settings.GENERATION = {**settings.GENERATION, "MODELS": {"image_creation": "/nonexistent/model"}}
    task = services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "a", "steps": 2})
    task = worker.wait_for(task.pk)
    assert task.state == TaskState.FAILURE
    assert task.error_code == "PIPELINE_ERROR"
    assert task.error_message


def test_deleting_a_finished_job_deletes_its_files(
    worker: InProcessWorker, client: APIClient, submit: Callable[..., dict[str, Any]]
) -> None:
    task_id = submit()["task_id"]
    path = worker.wait_for(task_id).result["outputs"][0]["path"]
    assert default_storage.exists(path)
    assert client.delete(f"/api/v1/tasks/{task_id}").status_code == 200
    assert not default_storage.exists(path)


def test_outputs_go_to_the_configured_storage_backend_and_its_own_urls(
    worker: InProcessWorker, client: APIClient, submit: Callable[..., dict[str, Any]], settings: Any
) -> None:
    # STORAGE_BACKEND / STORAGE_OPTIONS fill STORAGES["default"]: any Django storage,
    # django-storages' S3 among them; Django's in-memory one stands in for it here.
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage", "OPTIONS": {"base_url": "/cdn/"}},
    }
    task_id = submit()["task_id"]
    task = worker.wait_for(task_id)
    assert task.state == TaskState.SUCCESS, task.error_message
    output = client.get(f"/api/v1/tasks/{task_id}").json()["result"]["outputs"][0]
    path = task.result["outputs"][0]["path"]
    # Not this site's signed link: the storage's own URL (a presigned one, on S3).
    assert output["url"] == f"http://testserver/cdn/{path}"
    with default_storage.open(path) as stored:
        assert Image.open(io.BytesIO(stored.read())).size == (64, 64)
    assert client.delete(f"/api/v1/tasks/{task_id}").status_code == 200
    assert not default_storage.exists(path)
