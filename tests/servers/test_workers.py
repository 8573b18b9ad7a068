"""Real worker threads, each consuming one server's queue: jobs run where they were
routed, a silent server's job finishes elsewhere once, workers register themselves."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from accounts.models import User
from generation.models_cache import pipeline_cache
from generation.specs import task_type_spec
from servers.models import Algorithm, Server, ServerStatus
from servers.services import load_balancer_set_algorithm, server_set_maintenance, servers_mark_silent_offline
from tasks import services
from tasks.models import TERMINAL_STATES, Task, TaskEvent, TaskState
from tests.conftest import forget_worker, wait_for_state
from tests.servers.conftest import boot_once

pytestmark = pytest.mark.slow


def _submit(owner: User) -> Task:
    params = {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 1, "seed": 3}
    return services.task_submit(owner=owner, task_type="image_creation", params=params)


@contextmanager
def _model_held() -> Iterator[None]:
    """Hold the loaded model as a running job would: jobs that start meanwhile wait for
    it in their pipeline step, STARTED, until the block ends."""
    with pipeline_cache().use(task_type_spec("image_creation"), {}):
        yield


def _wait_all_finished(timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while Task.objects.exclude(state__in=TERMINAL_STATES).exists():
        assert time.monotonic() < deadline, Counter(Task.objects.values_list("state", flat=True))
        time.sleep(0.05)


def _peak_loads(servers: list[Server]) -> dict[str, int]:
    """The most unfinished jobs each server held at once, replayed from the event log:
    a job counts from its routing to its end."""
    names = {str(server.pk): server.name for server in servers}
    server_of = dict(Task.objects.values_list("pk", "server_id"))
    load: Counter[str] = Counter()
    peaks: Counter[str] = Counter()
    for event in TaskEvent.objects.order_by("id"):
        if event.type in ("submitted", "routed") and event.data.get("server_id") in names:
            name = names[event.data["server_id"]]
            load[name] += 1
            peaks[name] = max(peaks[name], load[name])
        elif event.state in TERMINAL_STATES and str(server_of[event.task_id]) in names:
            load[names[str(server_of[event.task_id])]] -= 1
    assert all(value == 0 for value in load.values()), load
    return dict(peaks)


def test_least_connections_over_real_workers_never_exceeds_max_concurrent(
    owner: User, make_server: Callable[..., Server], server_workers: Callable[..., Any]
) -> None:
    load_balancer_set_algorithm(algorithm=Algorithm.LEAST_CONNECTIONS)
    servers = [make_server(name, max_concurrent=2) for name in ("gpu-a", "gpu-b", "gpu-c")]
    for server in servers:
        server_workers(server, threads=2)
    for _ in range(300):
        _submit(owner)
    _wait_all_finished()
    peaks = _peak_loads(servers)
    done = Counter(Task.objects.filter(state=TaskState.SUCCESS).values_list("server__name", flat=True))
    print("least-connections, 300 jobs, max_concurrent 2:", dict(done), "peak load:", dict(peaks))
    assert sum(done.values()) == 300
    assert all(done[server.name] > 0 for server in servers)
    assert max(peaks.values()) <= 2


def test_jobs_run_on_the_server_they_were_routed_to(
    owner: User, make_server: Callable[..., Server], server_workers: Callable[..., Any]
) -> None:
    servers = [make_server(name, max_concurrent=1000) for name in ("gpu-a", "gpu-b", "gpu-c")]
    for server in servers:
        server_workers(server, threads=1)
    routed = [_submit(owner) for _ in range(90)]
    _wait_all_finished()
    finished = Task.objects.in_bulk([task.pk for task in routed])
    assert all(finished[task.pk].state == TaskState.SUCCESS for task in routed)
    # Routing decided at submit; each queue is consumed only by its server's worker.
    assert all(finished[task.pk].server_id == task.server_id for task in routed)
    table = Counter(task.server.name for task in routed)
    print("round-robin, 90 jobs run:", dict(table))
    assert max(table.values()) - min(table.values()) <= 1


def test_a_server_that_falls_silent_mid_job_has_its_job_finished_elsewhere_once(
    owner: User, make_server: Callable[..., Server], server_workers: Callable[..., Any], settings: Any
) -> None:
    settings.SERVERS = {**settings.SERVERS, "HEARTBEAT_INTERVAL_SECONDS": 0.1, "HEARTBEAT_MISSES": 3}
    first = make_server("first", max_concurrent=1)
    lost = server_workers(first, threads=1, heartbeat=0.1)
    with _model_held():
        # The job starts, then waits for the model this test holds: it is mid-run
        # however fast the machine is.
        task = _submit(owner)
        assert task.server == first
        wait_for_state(task.pk, {TaskState.STARTED})
        second = make_server("second", max_concurrent=1)
        server_workers(second, threads=1, heartbeat=0.1)
        lost.fall_silent()
        deadline = time.monotonic() + 30
        # Until the silent one is offline: on a loaded machine the live one's heartbeat
        # may come late too, and be marked offline until its next one.
        while Server.objects.get(pk=first.pk).status != ServerStatus.OFFLINE:
            assert time.monotonic() < deadline, "the silent server was never marked offline"
            servers_mark_silent_offline()
            time.sleep(0.05)
        requeued = wait_for_state(task.pk, {TaskState.STARTED, TaskState.RECEIVED})
        assert requeued.server == second and requeued.attempts == 2
    finished = wait_for_state(task.pk, TERMINAL_STATES, timeout=120)
    assert finished.state == TaskState.SUCCESS
    assert finished.server == second and finished.attempts == 2
    lost.stop()
    events = list(finished.events.values_list("type", flat=True))
    # The silent server's run got the model first or second; either way its step check
    # found the job taken over and it recorded nothing.
    assert events.count("succeeded") == 1 and events.count("requeued") == 1 and events.count("claimed") == 2
    assert finished.events.get(type="requeued").data["reason"] == "server offline"
    assert len(finished.result["outputs"]) == 1


def test_a_server_in_maintenance_finishes_its_job_and_gets_no_new_ones(
    owner: User, make_server: Callable[..., Server], server_workers: Callable[..., Any]
) -> None:
    resting = make_server("resting", max_concurrent=4)
    server_workers(resting, threads=1)
    with _model_held():
        running = _submit(owner)
        wait_for_state(running.pk, {TaskState.STARTED})
        server_set_maintenance(server=resting, maintenance=True, reason="driver update")
        working = make_server("working", max_concurrent=4)
        server_workers(working, threads=1)
        later = [_submit(owner) for _ in range(4)]
        assert Task.objects.get(pk=running.pk).state == TaskState.STARTED
    _wait_all_finished()
    assert Task.objects.get(pk=running.pk).server == resting
    assert Task.objects.get(pk=running.pk).state == TaskState.SUCCESS
    assert {Task.objects.get(pk=task.pk).server for task in later} == {working}


def test_a_worker_registers_itself_runs_its_jobs_and_goes_offline_at_shutdown(
    owner: User, broker: StubBroker, settings: Any, transactional_db: None, demo_models: Any
) -> None:
    import generation.actors  # noqa: F401

    settings.SERVERS = {
        **settings.SERVERS,
        "REGISTER_WORKERS": True,
        "HEARTBEAT_INTERVAL_SECONDS": 0.1,
        "WORKER_BACKLOG": 2,
    }
    settings.BACKSERV = {**settings.BACKSERV, "NODE_NAME": "gpu-box-7"}
    # This worker has no video model: it must not offer video jobs.
    settings.GENERATION = {
        **settings.GENERATION,
        "MODELS": {**settings.GENERATION["MODELS"], "video_creation": "/nonexistent/video-model"},
    }
    shared = settings.BACKSERV["QUEUE_NAME"]
    boot_once(broker)
    worker = dramatiq.Worker(broker, queues={shared}, worker_threads=3, worker_timeout=50)
    worker.start()
    try:
        server = Server.objects.get(name="gpu-box-7")
        # Three threads, each running up to a batch of jobs at once, with two batches
        # each waiting in the queue.
        # "auto" on the CPU: 4.
        assert settings.GENERATION["DYNAMIC_BATCH_SIZE"] is None
        batch = 4
        assert (server.kind, server.status, server.max_concurrent) == ("worker", "online", 3 * batch * 3)
        assert sorted(server.capabilities) == ["face_swap", "image_creation", "image_to_image", "image_upscale"]
        assert worker.consumer_whitelist == {shared, server.queue_name}
        task = _submit(owner)
        assert task.queue_name == server.queue_name
        assert wait_for_state(task.pk, TERMINAL_STATES).state == TaskState.SUCCESS
        before = server.last_heartbeat_at
        deadline = time.monotonic() + 10
        while Server.objects.get(pk=server.pk).last_heartbeat_at == before:
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.05)
    finally:
        worker.stop()
        forget_worker(broker, worker)
    assert Server.objects.get(name="gpu-box-7").status == ServerStatus.OFFLINE
    waiting = _submit(owner)
    assert waiting.wait_reason == "waiting_for_server"


def test_a_worker_for_webhooks_alone_registers_no_server_and_loads_no_model(
    broker: StubBroker, settings: Any, transactional_db: None, demo_models: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from generation import models_cache

    settings.SERVERS = {**settings.SERVERS, "REGISTER_WORKERS": True}
    settings.GENERATION = {**settings.GENERATION, "PRELOAD_MODELS": True}
    # A cache of its own: models an earlier test loaded must not hide a load here.
    monkeypatch.setattr(models_cache, "_cache", None)
    boot_once(broker)
    worker = dramatiq.Worker(broker, queues={settings.BACKSERV["WEBHOOK_QUEUE"]}, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        # A preload would have loaded the tiny models well within this.
        time.sleep(3)
        assert not Server.objects.exists()
        assert models_cache.pipeline_cache().loads == 0
    finally:
        worker.stop()
        forget_worker(broker, worker)


def test_a_worker_offers_only_the_task_types_whose_libraries_it_has(
    settings: Any, demo_models: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from generation.capabilities import worker_capabilities

    assert "video_creation" in worker_capabilities()
    # As on a machine without PyAV (None in sys.modules: `import av` fails).
    monkeypatch.setitem(sys.modules, "av", None)
    assert "video_creation" not in worker_capabilities()
    monkeypatch.setitem(sys.modules, "diffusers", None)
    assert sorted(worker_capabilities()) == ["face_swap", "image_upscale"]
