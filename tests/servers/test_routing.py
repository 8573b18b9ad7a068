"""Which server a job goes to: eligibility, the four algorithms, waiting for a server."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from backserv_site.errors import InvalidInput
from generation.runner import execute_message
from servers import routing
from servers.models import Algorithm, Server
from servers.routing import tasks_route_waiting
from servers.services import load_balancer_set_algorithm, server_set_maintenance
from tasks import services
from tasks.models import WAITING_FOR_SERVER, Task, TaskEvent, TaskState

JOBS = 300


def _submit(owner: User, **fields: object) -> Task:
    return services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "x"}, **fields)


def _distribution(owner: User, servers: list[Server], jobs: int = JOBS) -> dict[str, int]:
    for _ in range(jobs):
        _submit(owner)
    counts = Counter(Task.objects.values_list("server__name", flat=True))
    table = {server.name: counts.get(server.name, 0) for server in servers}
    print(f"distribution over {jobs} jobs:", table)
    return table


@pytest.fixture
def three(make_server: Callable[..., Server]) -> list[Server]:
    # Room for every job, so only the algorithm decides.
    return [make_server(name, max_concurrent=1000, priority=weight) for name, weight in (("a", 2), ("b", 1), ("c", 1))]


def test_with_no_server_registered_jobs_go_to_the_shared_queue(owner: User, settings: object) -> None:
    task = _submit(owner)
    assert task.queue_name == settings.BACKSERV["QUEUE_NAME"]  # type: ignore[attr-defined]
    assert task.server is None and task.wait_reason == ""


def test_round_robin_gives_each_server_an_equal_share(owner: User, three: list[Server]) -> None:
    load_balancer_set_algorithm(algorithm=Algorithm.ROUND_ROBIN)
    table = _distribution(owner, three)
    assert max(table.values()) - min(table.values()) <= 1
    assert sum(table.values()) == JOBS


def test_weighted_round_robin_follows_the_priorities(owner: User, three: list[Server]) -> None:
    load_balancer_set_algorithm(algorithm=Algorithm.WEIGHTED_ROUND_ROBIN)
    table = _distribution(owner, three)
    assert table == {"a": 150, "b": 75, "c": 75}


def test_random_gives_every_server_some(owner: User, three: list[Server]) -> None:
    load_balancer_set_algorithm(algorithm=Algorithm.RANDOM)
    table = _distribution(owner, three)
    # Each share is 100 expected; below 50 has odds far under one in a billion.
    assert all(count >= 50 for count in table.values()), table


def test_least_connections_prefers_the_idle_server(owner: User, make_server: Callable[..., Server]) -> None:
    busy, idle, half = (make_server(name, max_concurrent=4) for name in ("busy", "idle", "half"))
    load_balancer_set_algorithm(algorithm=Algorithm.ROUND_ROBIN)
    for server, count in ((busy, 2), (half, 1)):
        for _ in range(count):
            Task.objects.filter(pk=_submit(owner).pk).update(server=server, queue_name=server.queue_name)
    Task.objects.exclude(server__in=[busy, half]).delete()
    load_balancer_set_algorithm(algorithm=Algorithm.LEAST_CONNECTIONS)
    assert _submit(owner).server == idle
    assert _submit(owner).server in (idle, half)  # both have one now


def test_no_server_gets_more_than_max_concurrent_and_the_rest_wait(
    owner: User, make_server: Callable[..., Server]
) -> None:
    small = make_server("small", max_concurrent=2)
    load_balancer_set_algorithm(algorithm=Algorithm.LEAST_CONNECTIONS)
    tasks = [_submit(owner) for _ in range(3)]
    assert [task.server for task in tasks[:2]] == [small, small]
    assert tasks[2].server is None and tasks[2].queue_name == ""
    assert tasks[2].wait_reason == WAITING_FOR_SERVER and tasks[2].state == TaskState.PENDING


def test_a_job_waits_visibly_for_a_capable_server_and_is_routed_when_one_appears(
    owner: User, client: APIClient, make_server: Callable[..., Server], django_capture_on_commit_callbacks: Callable
) -> None:
    make_server("video-only", capabilities=[])
    response = client.post("/api/v1/tasks", {"task_type": "image_creation", "params": {"prompt": "x"}}, format="json")
    assert response.status_code == 202
    body = response.json()
    assert body["state"] == "PENDING" and body["wait_reason"] == "waiting_for_server" and body["server_id"] is None
    with django_capture_on_commit_callbacks(execute=True):
        capable = make_server("capable")
    shown = client.get(f"/api/v1/tasks/{body['task_id']}").json()
    assert shown["server_id"] == str(capable.pk) and shown["wait_reason"] == ""
    task = Task.objects.get(pk=body["task_id"])
    assert task.queue_name == capable.queue_name
    assert list(task.events.values_list("type", flat=True)) == ["submitted", "routed"]


def test_a_job_naming_a_group_goes_only_to_that_group(owner: User, make_server: Callable[..., Server]) -> None:
    make_server("plain", max_concurrent=10)
    gold = make_server("gold", max_concurrent=10, groups=["gold"])
    assert all(_submit(owner, group="gold").server == gold for _ in range(4))
    waiting = _submit(owner, group="platinum")
    assert waiting.server is None and waiting.wait_reason == WAITING_FOR_SERVER


def test_the_submit_api_takes_a_group(client: APIClient, make_server: Callable[..., Server]) -> None:
    gold = make_server("gold", groups=["gold"])
    make_server("plain")
    body = {"task_type": "image_creation", "params": {"prompt": "x"}, "group": "gold"}
    response = client.post("/api/v1/tasks", body, format="json")
    assert response.status_code == 202
    assert response.json()["server_id"] == str(gold.pk) and response.json()["group"] == "gold"
    response = client.post("/api/v1/tasks", {**body, "group": "g" * 101}, format="json")
    assert response.status_code == 400 and "group" in response.json()["fields"]


def test_servers_in_maintenance_or_offline_get_no_jobs(owner: User, make_server: Callable[..., Server]) -> None:
    resting, gone, working = (make_server(name, max_concurrent=10) for name in ("resting", "gone", "working"))
    server_set_maintenance(server=resting, maintenance=True, reason="driver update")
    Server.objects.filter(pk=gone.pk).update(status="offline")
    assert {_submit(owner).server for _ in range(6)} == {working}


def test_maintenance_moves_jobs_routed_but_not_started(
    owner: User, make_server: Callable[..., Server], django_capture_on_commit_callbacks: Callable
) -> None:
    first = make_server("first", max_concurrent=10)
    queued = _submit(owner)
    claimed = _submit(owner)
    assert queued.server == claimed.server == first
    assert services.task_claim(task_id=claimed.pk, worker="w")
    second = make_server("second", max_concurrent=10)
    with django_capture_on_commit_callbacks(execute=True):
        server_set_maintenance(server=first, maintenance=True, reason="reboot")
    assert Task.objects.get(pk=queued.pk).server == second
    assert Task.objects.get(pk=claimed.pk).server == first  # finishes where it runs


def test_waiting_jobs_are_routed_best_first_as_slots_free(owner: User, make_server: Callable[..., Server]) -> None:
    make_server("one-slot", max_concurrent=1)
    running = _submit(owner)
    low = _submit(owner, priority=1)
    high = _submit(owner, priority=9)
    assert tasks_route_waiting() == 0
    assert services.task_claim(task_id=running.pk, worker="w")
    running.refresh_from_db()
    assert services.task_start(task=running)
    assert services.task_succeed(task=running, result={})
    assert tasks_route_waiting() == 1
    assert Task.objects.get(pk=high.pk).wait_reason == ""
    assert Task.objects.get(pk=low.pk).wait_reason == WAITING_FOR_SERVER


def test_a_job_cancelled_while_its_route_is_chosen_stays_cancelled_and_unsent(
    owner: User,
    make_server: Callable[..., Server],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = make_server("one", max_concurrent=1)
    running = _submit(owner)
    waiting = [_submit(owner) for _ in range(3)]
    Server.objects.filter(pk=server.pk).update(max_concurrent=4)
    Task.objects.filter(pk=running.pk).update(state=TaskState.SUCCESS)
    sent: list[str] = []
    monkeypatch.setattr(routing, "dispatch_on_commit", lambda *, task_id, destination: sent.append(str(task_id)))
    route_all = routing._route_all

    def cancel_one_first(chosen: list[Any]) -> int:
        services.task_cancel(task=waiting[1])
        return route_all(chosen)

    monkeypatch.setattr(routing, "_route_all", cancel_one_first)
    assert tasks_route_waiting() == 2
    moved = {str(task.pk) for task in (waiting[0], waiting[2])}
    assert set(sent) == moved
    routed = TaskEvent.objects.filter(type=TaskEvent.Type.ROUTED, task__in=waiting)
    assert {str(pk) for pk in routed.values_list("task_id", flat=True)} == moved
    cancelled = Task.objects.get(pk=waiting[1].pk)
    assert (cancelled.state, cancelled.queue_name, cancelled.server_id) == (TaskState.REVOKED, "", None)


# Jobs of a type Back.Serv does not run (the distributed-system document's video-processing)


def _submit_remote_only(owner: User) -> Task:
    return services.task_submit(owner=owner, task_type="video-processing", params={}, capabilities=["video"])


def _remote(make_server: Callable[..., Server], name: str, declares: list[str], **fields: object) -> Server:
    url = f"http://{name}.example/p"
    return make_server(name, kind="remote", predict_url=url, capabilities=[], other_capabilities=declares, **fields)


def test_a_remote_only_job_goes_to_a_remote_server_declaring_every_capability(
    owner: User, make_server: Callable[..., Server]
) -> None:
    make_server("local-worker", capabilities=["image_creation", "video_creation"], max_concurrent=10)
    _remote(make_server, "images", ["image"], max_concurrent=10)
    video = _remote(make_server, "videos", ["image", "video"], max_concurrent=10)
    assert all(_submit_remote_only(owner).server == video for _ in range(3))


def test_a_remote_only_job_waits_rather_than_reach_a_local_worker(
    owner: User, make_server: Callable[..., Server], django_capture_on_commit_callbacks: Callable
) -> None:
    video = _remote(make_server, "videos", ["video"])
    server_set_maintenance(server=video, maintenance=True)
    task = _submit_remote_only(owner)
    assert task.server is None and task.queue_name == "" and task.wait_reason == WAITING_FOR_SERVER
    # With no server registered at all, a job of ours would take the shared queue; this one waits.
    Server.objects.all().delete()
    tasks_route_waiting()
    task.refresh_from_db()
    assert task.queue_name == "" and task.state == TaskState.PENDING
    with django_capture_on_commit_callbacks(execute=True):
        back = _remote(make_server, "videos-2", ["video"])
    task.refresh_from_db()
    assert task.server == back


def test_a_remote_only_job_needs_a_registered_server_declaring_it(
    owner: User, make_server: Callable[..., Server]
) -> None:
    _remote(make_server, "images", ["image"])
    with pytest.raises(InvalidInput) as refused:
        _submit_remote_only(owner)
    assert list(refused.value.fields) == ["task_type"] and "image" in refused.value.message
    with pytest.raises(InvalidInput) as refused:
        services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "x"}, capabilities=["video"])
    assert list(refused.value.fields) == ["capabilities"]
    assert not Task.objects.exists()


def test_only_remote_servers_declare_other_job_types(make_server: Callable[..., Server]) -> None:
    with pytest.raises(InvalidInput) as refused:
        make_server("local-worker", other_capabilities=["video"])
    assert list(refused.value.fields) == ["capabilities"]


def _one_step_jobs(owner: User, count: int) -> list[Task]:
    """Jobs the demo model runs in one step, each with its own seed (not batched)."""
    params = {"prompt": "a fox", "width": 64, "height": 64, "steps": 1}
    return [
        services.task_submit(owner=owner, task_type="image_creation", params={**params, "seed": seed})
        for seed in range(count)
    ]


@pytest.mark.django_db(transaction=True)
def test_a_worker_routes_the_freed_slot_then_takes_its_backlog_s_next_job(
    owner: User, make_server: Callable[..., Server], demo_models: Any, settings: Any
) -> None:
    settings.GENERATION = {**settings.GENERATION, "DYNAMIC_BATCH_SIZE": 1}
    # One job running and one waiting in the worker's queue (a backlog of one).
    server = make_server("backlogged", max_concurrent=2)
    first, second, third = _one_step_jobs(owner, 3)
    assert (first.queue_name, second.queue_name, third.queue_name) == (server.queue_name, server.queue_name, "")
    execute_message(first.pk, queue_name=server.queue_name)
    assert set(Task.objects.values_list("state", flat=True)) == {TaskState.SUCCESS}

    def event_id(task: Task, kind: str) -> int:
        return TaskEvent.objects.get(task=task, type=kind).pk

    # The slot the first job freed went to the third as the first ended, before the
    # second started (a pass beside a run slowed the run by more than the pass took);
    # the same thread ran all three.
    assert event_id(first, "succeeded") < event_id(third, "routed") < event_id(second, "started")
    assert len({task.worker for task in Task.objects.all()}) == 1


@pytest.mark.django_db(transaction=True)
def test_without_a_backlog_the_freed_slot_is_routed_before_the_next_claim(
    owner: User, make_server: Callable[..., Server], demo_models: Any, settings: Any
) -> None:
    settings.GENERATION = {**settings.GENERATION, "DYNAMIC_BATCH_SIZE": 1}
    server = make_server("no-backlog", max_concurrent=1)
    first, second = _one_step_jobs(owner, 2)
    assert second.queue_name == ""
    # One message runs both: the second job is routed as the first ends and taken by
    # the same thread, not left for its own message.
    execute_message(first.pk, queue_name=server.queue_name)
    assert Task.objects.get(pk=second.pk).state == TaskState.SUCCESS
