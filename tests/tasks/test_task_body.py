"""The job's body is built directly (TaskSerializer.to_representation), not through DRF's
fields, which still describe the schema: both must give the same body, for a job in
every situation a client can see."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIRequestFactory

from accounts.models import User
from servers.models import Server
from tasks import services
from tasks.api.serializers import TaskDetailSerializer, TaskSerializer, with_queue_positions
from tasks.models import Task, TaskState

PARAMS = {"prompt": "a fox", "width": 64, "height": 64, "steps": 2}


def _jobs(owner: User) -> list[Task]:
    """Jobs waiting (with a queue position and an ETA), claimed, ended each way, with a
    server, a retry's backoff, a webhook, results with outputs and links, an expired result."""
    now = timezone.now()
    # A recent run of the type, so waiting jobs show an ETA.
    Task.objects.create(
        owner=owner, task_type="image_creation", queue_name="done", state=TaskState.SUCCESS,
        started_at=now - timedelta(seconds=2), completed_at=now, gpu_seconds=2.0, queue_seconds=0.5,
    )  # fmt: skip
    waiting = services.task_submit(owner=owner, task_type="image_creation", params=PARAMS, priority=7, user_label="u1")
    # Set on the row: checking a webhook's URL resolves its host, and this one is not real.
    Task.objects.filter(pk=waiting.pk).update(webhook="https://hooks.invalid/h", webhook_events=["start", "progress"])
    behind = services.task_submit(owner=owner, task_type="image_creation", params=PARAMS)
    claimed = services.task_submit(owner=owner, task_type="image_creation", params=PARAMS)
    assert services.task_claim(task_id=claimed.pk, worker="w1")
    server = Server.objects.create(
        name="gpu-a", queue_name="gpu.a", key_prefix="kp", key_hash="-", registered_at=now, capabilities=["x"]
    )
    succeeded = Task.objects.create(
        owner=owner, task_type="image_creation", params=PARAMS, state=TaskState.SUCCESS, progress=1.0,
        server=server, attempts=1, started_at=now - timedelta(seconds=3), completed_at=now,
        queued_at=now - timedelta(seconds=4), queue_seconds=1.25, gpu_seconds=0.75,
        result={
            "outputs": [
                {"path": f"outputs/{owner.pk}/a.png", "content_type": "image/png", "width": 64, "height": 64},
                {"url": "/media/outputs/legacy.png", "content_type": "image/png"},
            ],
            "url": "/media/outputs/a.png",
            "seed": 42,
        },
    )  # fmt: skip
    failed = Task.objects.create(
        owner=owner, task_type="image_upscale", params={"image": "upload:x"}, state=TaskState.FAILURE,
        error_code="INPUT_NOT_FOUND", error_message="no such upload", attempts=3, completed_at=now,
        gpu_seconds=0.0, queue_seconds=None,
    )  # fmt: skip
    backing_off = Task.objects.create(
        owner=owner, task_type="image_creation", params=PARAMS, state=TaskState.PENDING, queue_name="backserv",
        run_after=now + timedelta(seconds=30), attempts=1, wait_reason="",
    )  # fmt: skip
    waiting_for_server = Task.objects.create(
        owner=owner, task_type="video-processing", params={}, capabilities=["video"], queue_name="",
        wait_reason="waiting_for_server", group="eu",
    )  # fmt: skip
    expired = Task.objects.create(
        owner=owner, task_type="image_creation", params=PARAMS, state=TaskState.SUCCESS, completed_at=now,
        result={"outputs": []}, result_expired_at=now,
    )  # fmt: skip
    revoked = services.task_submit(owner=owner, task_type="image_creation", params=PARAMS)
    services.task_cancel(task=revoked)
    ids = [
        waiting.pk, behind.pk, claimed.pk, succeeded.pk, failed.pk, backing_off.pk, waiting_for_server.pk,
        expired.pk, revoked.pk,
    ]  # fmt: skip
    by_id = {task.pk: task for task in Task.objects.filter(pk__in=ids)}
    return [by_id[pk] for pk in ids]


@pytest.mark.parametrize("serializer_class", [TaskSerializer, TaskDetailSerializer])
def test_the_direct_body_is_what_the_fields_give(owner: User, serializer_class: Any) -> None:
    request = APIRequestFactory().get("/api/v1/tasks")
    for task in _jobs(owner):
        direct = serializer_class(context={"request": request}).to_representation(task)
        through_fields = serializer_class(context={"request": request}).fields_representation(task)
        assert direct == through_fields, task.state
        assert list(direct) == list(through_fields)


def test_a_listing_s_bodies_are_what_the_fields_give(owner: User) -> None:
    tasks = _jobs(owner)
    context = with_queue_positions({"request": None}, tasks)
    direct = TaskSerializer(tasks, many=True, context=context).data
    through_fields = [TaskSerializer(context=context).fields_representation(task) for task in tasks]
    assert [dict(body) for body in direct] == through_fields
    assert [body["queue_position"] for body in direct][:3] == [0, 1, None]
