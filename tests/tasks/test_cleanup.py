"""cleanup_tasks: old finished jobs and their files go, in batches; nothing else does."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import User
from tasks.models import Task, TaskEvent, TaskState
from tasks.storage import task_files_prefix

OLD = timezone.now() - timedelta(days=40)


def _bulk(owner: User, count: int, *, state: TaskState, completed_at: object) -> list[Task]:
    tasks = Task.objects.bulk_create(
        Task(owner=owner, task_type="image_creation", state=state, completed_at=completed_at, queue_name="gpu")
        for _ in range(count)
    )
    TaskEvent.objects.bulk_create(TaskEvent(task=task, type="submitted", state=state) for task in tasks)
    return tasks


def _with_file(task: Task, media_root: Path, size: int) -> None:
    folder = media_root / task_files_prefix(task.pk)
    folder.mkdir(parents=True)
    (folder / "1-0.png").write_bytes(b"x" * size)


def _run(*args: str) -> str:
    out = StringIO()
    call_command("cleanup_tasks", *args, stdout=out)
    return out.getvalue()


def test_it_deletes_ten_thousand_old_jobs_in_batches_with_their_files(owner: User, _media_root: Path) -> None:
    old = _bulk(owner, 10_000, state=TaskState.SUCCESS, completed_at=OLD)
    for task in old[:3]:
        _with_file(task, _media_root, size=1000)
    recent = _bulk(owner, 5, state=TaskState.SUCCESS, completed_at=timezone.now() - timedelta(days=1))
    waiting = _bulk(owner, 5, state=TaskState.PENDING, completed_at=None)
    Task.objects.filter(pk__in=[t.pk for t in waiting]).update(submitted_at=OLD)

    dry = _run("--older-than", "30d", "--dry-run")
    assert "would delete 10000 task(s)" in dry and "3000 bytes" in dry
    assert Task.objects.count() == 10_010

    output = _run("--older-than", "30d", "--batch-size", "2000")
    assert "deleted 10000 task(s)" in output
    assert "3000 bytes" in output and "(5 batch(es))" in output
    assert set(Task.objects.values_list("pk", flat=True)) == {t.pk for t in recent + waiting}
    assert TaskEvent.objects.count() == 10
    assert not any((_media_root / task_files_prefix(task.pk) / "1-0.png").exists() for task in old[:3])
    # Nor the jobs' folders, empty now.
    assert not any((_media_root / task_files_prefix(task.pk)).exists() for task in old[:3])


def test_it_limits_the_cleanup_to_the_given_states(owner: User) -> None:
    _bulk(owner, 3, state=TaskState.SUCCESS, completed_at=OLD)
    _bulk(owner, 2, state=TaskState.FAILURE, completed_at=OLD)
    assert "deleted 2 task(s)" in _run("--older-than", "30d", "--state", "FAILURE")
    assert set(Task.objects.values_list("state", flat=True)) == {TaskState.SUCCESS}


def test_it_refuses_a_bad_age(db: None) -> None:
    with pytest.raises(CommandError, match="30d"):
        _run("--older-than", "thirty days")


def test_it_refuses_unfinished_states(db: None) -> None:
    with pytest.raises(CommandError):
        _run("--older-than", "30d", "--state", "STARTED")
