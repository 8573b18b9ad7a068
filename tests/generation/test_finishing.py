"""A pipeline call's finishing (encode, store, record) on a second stage that runs while
the worker thread computes the next batch (GENERATION OVERLAP_FINISHING, on by default
on a GPU): the same outcomes as finishing inline, one batch behind at most."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.files.storage import default_storage
from PIL import Image

from generation.finishing import OverlappedFinishing, outputs_encode
from generation.pipelines.base import encode_png
from tasks.models import Task, TaskEvent, TaskState
from tests.conftest import InProcessWorker

PROMPTS = ["a red fox", "a blue car", "waves at night", "a castle", "a lighthouse", "a meadow"]


def _pixels(task: Task) -> np.ndarray:
    with default_storage.open(task.result["outputs"][0]["path"]) as stored:
        return np.asarray(Image.open(io.BytesIO(stored.read())).convert("RGB"))


def _run_all(worker: InProcessWorker, submit: Callable[..., dict[str, Any]]) -> list[Task]:
    ids = [submit(prompt=prompt, seed=seed)["task_id"] for seed, prompt in enumerate(PROMPTS)]
    worker.start()
    worker.drain()
    worker.stop()
    return [Task.objects.get(pk=task_id) for task_id in ids]


@pytest.fixture
def overlapped(settings: Any) -> None:
    settings.GENERATION = {**settings.GENERATION, "OVERLAP_FINISHING": True, "DYNAMIC_BATCH_SIZE": 2}


def test_it_gives_every_job_what_finishing_inline_gives(
    stopped_worker: InProcessWorker, submit: Callable[..., dict[str, Any]], settings: Any
) -> None:
    settings.GENERATION = {**settings.GENERATION, "OVERLAP_FINISHING": False, "DYNAMIC_BATCH_SIZE": 2}
    inline = _run_all(stopped_worker, submit)
    settings.GENERATION = {**settings.GENERATION, "OVERLAP_FINISHING": True}
    overlapped = _run_all(stopped_worker, submit)

    assert [task.state for task in overlapped] == [TaskState.SUCCESS] * len(PROMPTS)
    for alone, staged in zip(inline, overlapped, strict=True):
        assert np.array_equal(_pixels(alone), _pixels(staged))
        assert staged.progress == 1.0 and staged.completed_at is not None
        assert [event.type for event in TaskEvent.objects.filter(task=staged).order_by("id")][-1] == "succeeded"
    # Each job's files were written once, under its own name.
    names = [output["path"] for task in overlapped for output in task.result["outputs"]]
    assert len(set(names)) == len(PROMPTS)


def test_a_store_that_fails_gives_the_jobs_another_attempt(
    stopped_worker: InProcessWorker,
    submit: Callable[..., dict[str, Any]],
    settings: Any,
    tmp_path: Path,
    overlapped: None,
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the media folder should be")
    settings.MEDIA_ROOT = str(blocker / "media")
    settings.BACKSERV = {**settings.BACKSERV, "RETRY_BACKOFF_SECONDS": 600.0}
    task_id = submit(prompt="a fox", seed=1)["task_id"]
    stopped_worker.start()
    deadline = time.monotonic() + 60
    while not TaskEvent.objects.filter(task_id=task_id, type="retry_scheduled").exists():
        assert time.monotonic() < deadline, "the failed store was not recorded"
        time.sleep(0.05)

    task = Task.objects.get(pk=task_id)
    assert (task.state, task.attempts, task.result) == (TaskState.PENDING, 1, None)
    failed = TaskEvent.objects.get(task=task, type="retry_scheduled")
    assert failed.data["code"] == "TRANSIENT_IO"


def test_a_batch_waits_for_the_one_before_it_to_finish() -> None:
    stage = OverlappedFinishing()
    first_may_end = threading.Event()
    order: list[str] = []

    def first() -> None:
        first_may_end.wait(5)
        order.append("first")

    stage.hand_off(first)
    handing = threading.Thread(target=stage.hand_off, args=(lambda: order.append("second"),))
    handing.start()
    time.sleep(0.2)
    # The second batch is not handed over while the first still finishes.
    assert handing.is_alive() and order == []
    first_may_end.set()
    handing.join(5)
    stage.close()
    assert order == ["first", "second"]


def test_outputs_encode_in_parallel_to_the_bytes_encoding_one_by_one_gives() -> None:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(6)]
    together = [encode_png(image) for image in images]
    outputs_encode(together)
    for image, output in zip(images, together, strict=True):
        assert output.data == encode_png(image).data
        assert Image.open(io.BytesIO(output.data)).size == (64, 64)
