"""Dynamic batching: compatible waiting text-to-image jobs run as one pipeline call, and
each job still gets its own prompt, seed, progress and outcome."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any
from uuid import UUID

import numpy as np
import pytest
from django.core.files.storage import default_storage
from PIL import Image

from tasks import services
from tasks.models import Task, TaskEvent, TaskState
from tests.conftest import InProcessWorker

JOBS = [("a red fox", 11), ("a blue car", 12), ("waves at night", 13), ("a castle", 14)]


def _pixels(task: Task) -> np.ndarray:
    with default_storage.open(task.result["outputs"][0]["path"]) as stored:
        return np.asarray(Image.open(io.BytesIO(stored.read())).convert("RGB")).astype(int)


def _started_batch_sizes(task_ids: list[str]) -> list[int]:
    events = TaskEvent.objects.filter(task_id__in=task_ids, type=TaskEvent.Type.STARTED)
    return sorted(event.data.get("batch_size", 1) for event in events)


def _run_all(
    worker: InProcessWorker, submit: Callable[..., dict[str, Any]], jobs: list[Any], **params: Any
) -> list[Task]:
    """Queue the jobs with the worker stopped, so the first message finds them all waiting."""
    ids = [submit(prompt=prompt, seed=seed, **params)["task_id"] for prompt, seed in jobs]
    worker.start()
    worker.drain()
    worker.stop()
    tasks = [Task.objects.get(pk=task_id) for task_id in ids]
    assert [task.state for task in tasks] == [TaskState.SUCCESS] * len(tasks)
    return tasks


def test_compatible_waiting_jobs_run_as_one_call_and_each_gets_its_solo_image(
    stopped_worker: InProcessWorker, submit: Callable[..., dict[str, Any]], settings: Any
) -> None:
    batched = _run_all(stopped_worker, submit, JOBS)
    assert _started_batch_sizes([str(task.pk) for task in batched]) == [4, 4, 4, 4]
    assert [task.result["seed"] for task in batched] == [seed for _, seed in JOBS]

    settings.GENERATION = {**settings.GENERATION, "DYNAMIC_BATCH_SIZE": 1}
    solo = _run_all(stopped_worker, submit, JOBS)
    assert _started_batch_sizes([str(task.pk) for task in solo]) == [1, 1, 1, 1]

    for alone, in_batch in zip(solo, batched, strict=True):
        # Batched kernels round differently from single ones: the same image up to the
        # last bit of a channel, never another job's image.
        assert np.abs(_pixels(alone) - _pixels(in_batch)).max() <= 1
    distinct = [_pixels(task) for task in batched]
    assert all(np.abs(distinct[0] - other).mean() > 5 for other in distinct[1:])


def test_only_jobs_with_the_same_size_and_steps_share_a_call(
    stopped_worker: InProcessWorker, submit: Callable[..., dict[str, Any]]
) -> None:
    small = [submit(prompt="fox", seed=seed)["task_id"] for seed in (1, 2)]
    wide = submit(prompt="fox", seed=3, width=128)["task_id"]
    longer = submit(prompt="fox", seed=4, steps=5)["task_id"]
    several = submit(prompt="fox", seed=5, num_images=2)["task_id"]
    stopped_worker.start()
    stopped_worker.drain()
    assert Task.objects.filter(state=TaskState.SUCCESS).count() == 5
    assert _started_batch_sizes(small) == [2, 2]
    assert _started_batch_sizes([wide, longer, several]) == [1, 1, 1]


def test_batches_hold_at_most_the_configured_number_of_jobs(
    stopped_worker: InProcessWorker, submit: Callable[..., dict[str, Any]], settings: Any
) -> None:
    settings.GENERATION = {**settings.GENERATION, "DYNAMIC_BATCH_SIZE": 3}
    ids = [submit(prompt="fox", seed=seed)["task_id"] for seed in range(5)]
    stopped_worker.start()
    stopped_worker.drain()
    assert _started_batch_sizes(ids) == [2, 2, 3, 3, 3]


def test_a_job_cancelled_mid_batch_is_revoked_and_the_others_finish(
    stopped_worker: InProcessWorker, submit: Callable[..., dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [submit(prompt="fox", seed=seed, steps=6)["task_id"] for seed in range(3)]
    victim = Task.objects.get(pk=ids[1])
    from generation import runner

    report = runner.StepReporter.__call__

    def cancel_at_step_two(self: runner.StepReporter, row: Any, step: int, total: int) -> None:
        if step == 2 and self.task.pk == victim.pk:
            services.task_cancel(task=Task.objects.get(pk=victim.pk))
        report(self, row, step, total)

    monkeypatch.setattr(runner.StepReporter, "__call__", cancel_at_step_two)
    stopped_worker.start()
    stopped_worker.drain()
    states = dict(Task.objects.filter(pk__in=ids).values_list("pk", "state"))
    assert states[victim.pk] == TaskState.REVOKED
    assert Task.objects.get(pk=victim.pk).result is None
    assert [states[UUID(task_id)] for task_id in (ids[0], ids[2])] == [TaskState.SUCCESS] * 2
    assert _started_batch_sizes(ids) == [3, 3, 3]


def test_a_failing_batch_fails_each_of_its_jobs(
    stopped_worker: InProcessWorker, submit: Callable[..., dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from generation.pipelines import image_creation

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the model exploded")

    monkeypatch.setattr(image_creation, "run_batch", broken)
    ids = [submit(prompt="fox", seed=seed)["task_id"] for seed in range(2)]
    stopped_worker.start()
    stopped_worker.drain()
    for task in Task.objects.filter(pk__in=ids):
        assert (task.state, task.error_code) == (TaskState.FAILURE, "PIPELINE_ERROR")
        assert "the model exploded" in task.error_message


def test_a_batch_request_reaches_a_waiting_worker_as_full_batches(
    worker: InProcessWorker, client: Any, settings: Any
) -> None:
    """The request's jobs are committed together: the worker that wakes on the first
    one's message finds them all, rather than the first alone and the rest after."""
    settings.GENERATION = {**settings.GENERATION, "DYNAMIC_BATCH_SIZE": 4}
    params = {"prompt": "fox", "width": 64, "height": 64, "steps": 4}
    body = {"tasks": [{"task_type": "image_creation", "params": {**params, "seed": seed}} for seed in range(8)]}
    bad = {"task_type": "image_creation", "params": {**params, "steps": 10_000}}
    response = client.post(
        "/api/v1/tasks/batch", {"tasks": [*body["tasks"][:4], bad, *body["tasks"][4:]]}, format="json"
    )
    assert response.status_code == 200, response.content
    assert (response.json()["accepted"], response.json()["rejected"]) == (8, 1)
    ids = [item["task"]["task_id"] for item in response.json()["results"] if item["status"] == 202]
    for task_id in ids:
        assert worker.wait_for(task_id).state == TaskState.SUCCESS
    assert _started_batch_sizes(ids) == [4] * 8
