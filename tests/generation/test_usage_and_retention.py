"""Real runs record their usage as they end, and an expired result can no longer feed a
later job."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from tasks.models import Task, TaskEvent, TaskState
from tasks.retention import task_results_expire
from tests.conftest import InProcessWorker
from tests.generation.conftest import png_bytes

RunJob = Callable[..., Task]


def _lanczos(image: str) -> dict[str, Any]:
    return {"image": image, "scale_factor": 2, "method": "lanczos"}


def test_a_finished_run_records_its_queue_wait_and_gpu_seconds(client: APIClient, run_job: RunJob) -> None:
    task = run_job("image_upscale", _lanczos(base64.b64encode(png_bytes(10, 12)).decode()))
    assert task.state == TaskState.SUCCESS, task.error_message

    run = (task.completed_at - task.started_at).total_seconds()
    assert task.gpu_seconds == pytest.approx(run, abs=1e-6)
    assert task.queue_seconds == pytest.approx((task.started_at - task.queued_at).total_seconds(), abs=1e-6)
    body = client.get(f"/api/v1/tasks/{task.pk}").json()
    assert body["gpu_seconds"] == task.gpu_seconds and body["queue_seconds"] == task.queue_seconds


def test_jobs_batched_in_one_call_share_its_gpu_time(
    stopped_worker: InProcessWorker, submit: Callable[..., dict[str, Any]]
) -> None:
    ids = [submit(prompt=prompt, seed=seed)["task_id"] for prompt, seed in (("a fox", 1), ("a car", 2), ("a cat", 3))]
    stopped_worker.start()
    stopped_worker.drain()

    tasks = [Task.objects.get(pk=task_id) for task_id in ids]
    assert [task.state for task in tasks] == [TaskState.SUCCESS] * 3
    started = TaskEvent.objects.filter(task_id__in=ids, type=TaskEvent.Type.STARTED)
    assert sorted(event.data.get("batch_size", 1) for event in started) == [3, 3, 3]
    for task in tasks:
        assert task.gpu_seconds == pytest.approx((task.completed_at - task.started_at).total_seconds() / 3, abs=1e-6)


def test_a_job_naming_an_expired_result_fails_input_not_found(client: APIClient, run_job: RunJob) -> None:
    source = run_job("image_upscale", _lanczos(base64.b64encode(png_bytes(10, 12)).decode()))
    assert source.state == TaskState.SUCCESS, source.error_message
    assert task_results_expire(finished_before=source.completed_at + timedelta(seconds=1)) == 1

    chained = run_job("image_upscale", _lanczos(f"task:{source.pk}"))
    assert (chained.state, chained.error_code) == (TaskState.FAILURE, "INPUT_NOT_FOUND")
    assert "expired" in chained.error_message
