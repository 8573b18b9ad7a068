"""Change notices: in-process, and across processes through Redis pub/sub."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest

from tasks import notify

REDIS_URL = "redis://127.0.0.1:6379/7"


def redis_or_skip() -> Any:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis at " + REDIS_URL)
    return client


def test_a_notice_wakes_only_the_waiters_of_that_task() -> None:
    hub = notify.Hub()
    woken: list[str] = []
    hub.subscribe([notify.task_key("a")], lambda: woken.append("a"))
    unsubscribe = hub.subscribe([notify.task_key("b")], lambda: woken.append("b"))

    hub.dispatch([notify.task_key("a"), notify.owner_key(1)])
    unsubscribe()
    hub.dispatch([notify.task_key("b")])

    assert woken == ["a"]
    assert hub.waiting_count() == 1


def test_a_notice_published_through_redis_wakes_a_waiter_of_another_process(settings: Any) -> None:
    client = redis_or_skip()
    channel = f"backserv-test:{uuid.uuid4().hex}"
    settings.BACKSERV = {**settings.BACKSERV, "NOTIFY_URL": REDIS_URL, "NOTIFY_CHANNEL": channel}
    hub = notify.Hub()
    woken = threading.Event()
    hub.subscribe([notify.task_key("x")], woken.set)
    deadline = time.monotonic() + 10
    # Until the listener has subscribed, a publish reaches nobody: publish until it lands.
    while not woken.is_set():
        assert time.monotonic() < deadline, "the Redis notice never arrived"
        client.publish(channel, json.dumps({"origin": "another-process", "keys": [notify.task_key("x")]}))
        woken.wait(0.1)


@pytest.mark.django_db(transaction=True)
def test_a_batch_s_change_is_one_notice_that_wakes_each_job_s_waiters(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from accounts.models import User
    from tasks import services

    settings.BACKSERV = {**settings.BACKSERV, "NOTIFY_URL": REDIS_URL, "NOTIFY_CHANNEL": "unused"}
    published: list[list[str]] = []

    class Publisher:
        def publish(self, channel: str, notice: str) -> None:
            published.append(json.loads(notice)["keys"])

    monkeypatch.setattr(notify, "_redis_publisher", lambda url: Publisher())
    monkeypatch.setattr(notify.Hub, "_ensure_listener", lambda hub: None)
    owner = User.objects.create_user("batcher")
    params = {"prompt": "fox", "width": 64, "height": 64, "steps": 4}
    jobs = [services.task_submit(owner=owner, task_type="image_creation", params=params) for _ in range(3)]
    woken: list[str] = []
    unsubscribes = [
        notify.hub.subscribe([notify.task_key(job.pk)], lambda job=job: woken.append(str(job.pk))) for job in jobs
    ]
    published.clear()

    started = services.tasks_claim_and_start(queue_name=jobs[0].queue_name, worker="w", size=3)
    for unsubscribe in unsubscribes:
        unsubscribe()

    assert len(started) == 3

    assert len(published) == 1
    assert set(published[0]) == {notify.task_key(job.pk) for job in jobs} | {notify.owner_key(owner.pk)}
    assert sorted(woken) == sorted(str(job.pk) for job in jobs)
