"""Result retention: the sweep deletes the files of jobs that succeeded longer ago than
RESULT_RETENTION_DAYS, a bounded batch at a time, and the job then shows
`result_expired` and no URLs; TASK_RETENTION_DAYS deletes the jobs themselves."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from tasks.models import Task, TaskEvent, TaskState
from tasks.retention import retention_sweep, task_results_expire
from tasks.storage import task_files_prefix
from tasks.sweeper import sweep_once
from tasks.usage_rollup import usage_day_roll_up


def _succeeded(owner: User, media_root: Path, *, days_ago: float) -> Task:
    """A job that succeeded `days_ago`, with one output file stored as the runner stores it."""
    task = Task.objects.create(owner=owner, task_type="image_creation", state=TaskState.SUCCESS, queue_name="gpu")
    path = f"{task_files_prefix(task.pk)}/1-0.png"
    (media_root / path).parent.mkdir(parents=True)
    (media_root / path).write_bytes(b"png")
    output = {"path": path, "url": f"/media/{path}", "content_type": "image/png", "size": 3, "width": 8, "height": 8}
    Task.objects.filter(pk=task.pk).update(
        result={"outputs": [output], "url": output["url"], "seed": 7},
        completed_at=timezone.now() - timedelta(days=days_ago),
    )
    return Task.objects.get(pk=task.pk)


@pytest.fixture
def keep_a_week(settings: Any) -> None:
    settings.BACKSERV = {**settings.BACKSERV, "RESULT_RETENTION_DAYS": 7, "TASK_RETENTION_DAYS": 0}


def test_the_sweep_deletes_the_files_of_jobs_past_retention_and_not_before(
    client: APIClient, owner: User, _media_root: Path, keep_a_week: None
) -> None:
    old = _succeeded(owner, _media_root, days_ago=7.1)
    recent = _succeeded(owner, _media_root, days_ago=6.9)

    assert sweep_once()["results_expired"] == 1

    assert not (_media_root / task_files_prefix(old.pk)).exists()
    assert (_media_root / recent.result["outputs"][0]["path"]).exists()
    body = client.get(f"/api/v1/tasks/{old.pk}").json()
    assert body["result_expired"] is True
    expired = {"content_type": "image/png", "size": 3, "width": 8, "height": 8, "url": None}
    assert body["result"]["outputs"] == [expired]
    assert body["result"]["url"] is None and body["result"]["seed"] == 7
    kept = client.get(f"/api/v1/tasks/{recent.pk}").json()
    assert kept["result_expired"] is False
    assert kept["result"]["url"].startswith("http://testserver/media/outputs/")
    # Done once: the next sweep finds nothing more to expire.
    assert sweep_once()["results_expired"] == 0


def test_expiry_goes_a_bounded_batch_at_a_time_oldest_first(owner: User, _media_root: Path) -> None:
    jobs = [_succeeded(owner, _media_root, days_ago=30 - index * 0.01) for index in range(5)]

    assert task_results_expire(finished_before=timezone.now(), batch_size=2) == 2
    expired = set(Task.objects.filter(result_expired_at__isnull=False).values_list("pk", flat=True))
    assert expired == {jobs[0].pk, jobs[1].pk}
    assert task_results_expire(finished_before=timezone.now(), batch_size=2) == 2
    assert task_results_expire(finished_before=timezone.now(), batch_size=2) == 1
    assert task_results_expire(finished_before=timezone.now(), batch_size=2) == 0


def test_only_successful_jobs_expire(owner: User, _media_root: Path, keep_a_week: None) -> None:
    failed = _succeeded(owner, _media_root, days_ago=30)
    Task.objects.filter(pk=failed.pk).update(state=TaskState.FAILURE)

    assert retention_sweep()["results_expired"] == 0
    assert Task.objects.get(pk=failed.pk).result_expired_at is None


def test_zero_days_keeps_results_forever(owner: User, _media_root: Path, settings: Any) -> None:
    settings.BACKSERV = {**settings.BACKSERV, "RESULT_RETENTION_DAYS": 0}
    ancient = _succeeded(owner, _media_root, days_ago=3650)

    assert retention_sweep() == {"results_expired": 0, "tasks_deleted": 0}
    assert (_media_root / ancient.result["outputs"][0]["path"]).exists()


def test_task_retention_deletes_old_jobs_a_batch_per_sweep_once_their_usage_is_summed(
    owner: User, _media_root: Path, settings: Any
) -> None:
    settings.BACKSERV = {**settings.BACKSERV, "RESULT_RETENTION_DAYS": 0, "TASK_RETENTION_DAYS": 3}
    old = [_succeeded(owner, _media_root, days_ago=4) for _ in range(3)]
    recent = _succeeded(owner, _media_root, days_ago=2)
    waiting = Task.objects.create(owner=owner, task_type="image_creation", queue_name="gpu")
    TaskEvent.objects.create(task=old[0], type="submitted", state=TaskState.PENDING)

    # Not before their days' usage is summed up, which it would lose.
    assert retention_sweep(batch_size=2)["tasks_deleted"] == 0
    while usage_day_roll_up():
        pass
    assert retention_sweep(batch_size=2)["tasks_deleted"] == 2
    assert retention_sweep(batch_size=2)["tasks_deleted"] == 1
    assert set(Task.objects.values_list("pk", flat=True)) == {recent.pk, waiting.pk}
    assert all(not (_media_root / task_files_prefix(task.pk)).exists() for task in old)
    assert not TaskEvent.objects.filter(task_id=old[0].pk).exists()


def test_another_user_s_expired_job_is_still_a_404(
    other_client: APIClient, owner: User, _media_root: Path, keep_a_week: None
) -> None:
    old = _succeeded(owner, _media_root, days_ago=30)
    retention_sweep()
    assert other_client.get(f"/api/v1/tasks/{old.pk}").status_code == 404
