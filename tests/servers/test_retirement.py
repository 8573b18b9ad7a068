"""Departed workers: a worker's server row offline past the retention, with no
unfinished job, goes with its queue's stale messages; everything else stays."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import dramatiq
from django.utils import timezone
from dramatiq.brokers.stub import StubBroker

from accounts.models import User
from servers.models import Server, ServerKind, ServerStatus
from servers.services import servers_retire_departed
from tasks.models import Task, TaskState


def test_departed_workers_go_with_their_queues_after_the_retention(
    owner: User, make_server: Callable[..., Server], broker: StubBroker, settings: Any
) -> None:
    settings.SERVERS = {**settings.SERVERS, "OFFLINE_RETENTION_HOURS": 24}
    now = timezone.now()
    gone, busy, recent = make_server("gone-host"), make_server("busy-host"), make_server("recent-host")
    remote = make_server("staff-remote", kind=ServerKind.REMOTE, predict_url="http://198.51.100.7/predict")
    long_ago = now - timedelta(hours=25)
    Server.objects.filter(pk__in=[gone.pk, busy.pk, remote.pk]).update(
        status=ServerStatus.OFFLINE, last_heartbeat_at=long_ago
    )
    Server.objects.filter(pk=recent.pk).update(status=ServerStatus.OFFLINE, last_heartbeat_at=now - timedelta(hours=1))
    finished = Task.objects.create(owner=owner, task_type="image_creation", state=TaskState.SUCCESS, server=gone)
    Task.objects.create(owner=owner, task_type="image_creation", state=TaskState.STARTED, server=busy)
    broker.declare_queue(gone.queue_name)
    broker.enqueue(
        dramatiq.Message(queue_name=gone.queue_name, actor_name="run_task", args=("x",), kwargs={}, options={})
    )

    assert servers_retire_departed(now=now) == 1
    assert sorted(Server.objects.values_list("name", flat=True)) == ["busy-host", "recent-host", "staff-remote"]
    # The job's record stays; only its link to the removed server goes.
    assert Task.objects.get(pk=finished.pk).server is None
    assert broker.queues[gone.queue_name].qsize() == 0
    assert servers_retire_departed(now=now) == 0


def test_a_retention_of_zero_keeps_every_server(make_server: Callable[..., Server], settings: Any) -> None:
    settings.SERVERS = {**settings.SERVERS, "OFFLINE_RETENTION_HOURS": 0}
    server = make_server("old-host")
    Server.objects.filter(pk=server.pk).update(
        status=ServerStatus.OFFLINE, last_heartbeat_at=timezone.now() - timedelta(days=400)
    )
    assert servers_retire_departed() == 0
    assert Server.objects.filter(pk=server.pk).exists()
