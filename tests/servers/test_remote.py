"""Remote GPU servers: jobs POSTed to a real local HTTP server, which reports back over
HTTP with its server key; health checks; the state rules of its reports."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dramatiq
import pytest
import requests
from django.utils import timezone
from dramatiq.brokers.stub import StubBroker
from rest_framework.test import APIClient

from accounts.models import User
from servers.models import Server, ServerStatus
from servers.monitor import servers_poll_health
from servers.remote import remote_worker_name
from servers.routing import local_workers_present, shared_queue_name
from servers.services import IssuedServer, server_register, servers_mark_silent_offline
from tasks import services
from tasks.models import TERMINAL_STATES, WAITING_FOR_SERVER, Task, TaskState
from tasks.selectors import task_attempts_history
from tests.conftest import InProcessWorker, forget_worker, wait_for_state
from tests.servers.conftest import RemoteGpu, boot_once


def _register_remote(remote: RemoteGpu, **fields: Any) -> IssuedServer:
    return server_register(
        name="remote-gpu",
        predict_url=f"{remote.url}/predict",
        health_url=f"{remote.url}/health",
        capabilities=["image_creation"],
        max_concurrent=4,
        **fields,
    )


def _submit(owner: User) -> Task:
    return services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "a fox", "seed": 1})


def _eventually(check: Any, timeout: float = 30) -> None:
    """The forward's POST reaches the server just after its claim commits: wait for it."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the remote server never got the job"
        time.sleep(0.02)


def _key_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_a_job_routed_to_a_remote_server_is_posted_there_and_reported_back_over_http(
    owner: User, worker: InProcessWorker, remote_gpu: RemoteGpu, live_server: Any, settings: Any
) -> None:
    settings.SERVERS = {**settings.SERVERS, "CALLBACK_BASE_URL": live_server.url}
    issued = _register_remote(remote_gpu)
    headers = {"Authorization": f"Bearer {issued.key}"}

    def run_job(job: dict[str, Any]) -> None:
        url = job["callback_url"]
        for body in (
            {"state": "STARTED"},
            {"progress": 0.5},
            {"state": "SUCCESS", "result": {"url": "https://cdn.example/fox.png"}, "attempt": job["attempt"]},
        ):
            response = requests.put(url, json=body, headers=headers, timeout=10)
            assert response.status_code == 200, response.text

    remote_gpu.on_job = run_job
    task = _submit(owner)
    assert task.server == issued.server
    finished = wait_for_state(task.pk, TERMINAL_STATES)
    assert finished.state == TaskState.SUCCESS, finished.error_message
    assert finished.result == {"url": "https://cdn.example/fox.png"}
    assert finished.worker == remote_worker_name(issued.server)
    [job] = remote_gpu.jobs
    assert job["task_id"] == str(task.pk) and job["task_type"] == "image_creation" and job["attempt"] == 1
    assert job["params"]["prompt"] == "a fox" and job["callback_url"] == f"{live_server.url}/api/v1/tasks/{task.pk}"
    events = list(finished.events.values_list("type", flat=True))
    assert events == ["submitted", "claimed", "started", "progress", "succeeded"]


def test_a_job_the_remote_server_refuses_fails_with_its_answer(
    owner: User, worker: InProcessWorker, remote_gpu: RemoteGpu
) -> None:
    remote_gpu.predict_status = 400
    _register_remote(remote_gpu)
    finished = wait_for_state(_submit(owner).pk, TERMINAL_STATES)
    assert finished.state == TaskState.FAILURE and finished.error_code == "REMOTE_REJECTED"


def test_an_unreachable_remote_server_gets_degraded_and_its_job_waits_for_another(
    owner: User, worker: InProcessWorker, remote_gpu: RemoteGpu
) -> None:
    remote_gpu.predict_status = 503
    issued = _register_remote(remote_gpu)
    task = _submit(owner)
    worker.drain()
    task.refresh_from_db()
    # Tried with retries (1 + 3), then given back: attempt 1 spent, waiting again.
    assert len(remote_gpu.jobs) == 4
    assert task.state == TaskState.PENDING and task.attempts == 1 and task.wait_reason == WAITING_FOR_SERVER
    assert Server.objects.get(pk=issued.server.pk).status == ServerStatus.DEGRADED


def test_a_remote_server_that_refuses_the_connection_goes_offline_at_once_with_its_jobs(
    owner: User, worker: InProcessWorker, remote_gpu: RemoteGpu
) -> None:
    issued = _register_remote(remote_gpu)
    remote_gpu.close()  # nothing listens at its address any more
    first, second = _submit(owner), _submit(owner)
    worker.drain()

    # No retries against a closed port: offline now, not degraded after seconds of them,
    # and both jobs given back to wait for other capacity, no attempt spent: neither
    # reached the server.
    assert Server.objects.get(pk=issued.server.pk).status == ServerStatus.OFFLINE
    for submitted in (first, second):
        task = Task.objects.get(pk=submitted.pk)
        assert (task.state, task.wait_reason, task.server_id) == (TaskState.PENDING, WAITING_FOR_SERVER, None)
        assert (task.attempts, task.worker, task_attempts_history(task=task)) == (0, "", [])
    # The one forwarded was claimed for the server, then its claim handed back.
    kinds = list(first.events.values_list("type", flat=True))
    assert kinds[kinds.index("claimed") :] == ["claimed", "handed_back"]


def test_forwards_go_on_the_outbound_queue_not_behind_gpu_work(
    owner: User, broker: StubBroker, remote_gpu: RemoteGpu, settings: Any, transactional_db: None
) -> None:
    import generation.actors  # noqa: F401
    import servers.actors  # noqa: F401

    _register_remote(remote_gpu)
    boot_once(broker)
    gpu_only = dramatiq.Worker(broker, queues={settings.BACKSERV["QUEUE_NAME"]}, worker_threads=1, worker_timeout=50)
    gpu_only.start()
    try:
        task = _submit(owner)
        time.sleep(1)
        # A worker of GPU jobs alone never makes the HTTP call...
        assert remote_gpu.jobs == [] and Task.objects.get(pk=task.pk).state == TaskState.PENDING
    finally:
        gpu_only.stop()
        forget_worker(broker, gpu_only)
    outbound = dramatiq.Worker(broker, queues={settings.BACKSERV["WEBHOOK_QUEUE"]}, worker_threads=1, worker_timeout=50)
    outbound.start()
    try:
        # ...the outbound one does.
        assert wait_for_state(task.pk, {TaskState.RECEIVED}).worker == remote_worker_name(Server.objects.get())
        _eventually(lambda: remote_gpu.jobs)
        assert [job["task_id"] for job in remote_gpu.jobs] == [str(task.pk)]
    finally:
        outbound.stop()
        forget_worker(broker, outbound)


@pytest.fixture
def embedded_workers() -> Iterator[None]:
    """As `manage.py serve` declares its own unregistered worker threads."""
    local_workers_present()
    yield
    local_workers_present(False)


def test_the_embedded_servers_own_workers_take_what_no_registered_server_can(
    owner: User, worker: InProcessWorker, remote_gpu: RemoteGpu, embedded_workers: None
) -> None:
    issued = _register_remote(remote_gpu)
    remote_gpu.close()  # the only registered server is gone
    params = {"prompt": "a fox", "seed": 1, "width": 64, "height": 64, "steps": 2}
    refused = services.task_submit(owner=owner, task_type="image_creation", params=params)
    # Its forward was refused: the server went offline and the job came back to the
    # local workers, which ran it, instead of waiting for a server while they idled.
    done = worker.wait_for(refused.pk)
    assert (done.state, done.server_id) == (TaskState.SUCCESS, None)
    assert not done.worker.startswith("remote:")
    # The refused forward spent none of its attempts: one run, on the local workers.
    assert done.attempts == 1
    assert [(run["attempt"], run["worker"], run["outcome"]) for run in task_attempts_history(task=done)] == [
        (1, done.worker, "succeeded")
    ]
    assert Server.objects.get(pk=issued.server.pk).status == ServerStatus.OFFLINE
    # Later jobs go to them at once.
    later = services.task_submit(owner=owner, task_type="image_creation", params=params)
    assert later.wait_reason == "" and later.queue_name == shared_queue_name()
    assert worker.wait_for(later.pk).state == TaskState.SUCCESS
    # A job asking for a group of servers still waits for one.
    grouped = services.task_submit(owner=owner, task_type="image_creation", params=params, group="studio-a")
    assert grouped.wait_reason == WAITING_FOR_SERVER


def test_health_checks_run_side_by_side_each_within_its_timeout(db: None, settings: Any) -> None:
    release = threading.Event()

    class Hanging(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            release.wait(10)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hanging)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        settings.SERVERS = {**settings.SERVERS, "HEALTH_TIMEOUT_SECONDS": 1.0, "REMOTE_TIMEOUT_SECONDS": 10.0}
        for index in range(4):
            server_register(
                name=f"hanging-{index}", predict_url=f"{url}/predict", health_url=f"{url}/health", capabilities=[]
            )
        Server.objects.update(last_heartbeat_at=timezone.now() - timedelta(minutes=5), status=ServerStatus.ONLINE)
        started = time.monotonic()
        assert servers_poll_health() == 4
        # One timeout, not four in a row.
        assert time.monotonic() - started < 3
        assert set(Server.objects.values_list("status", flat=True)) == {ServerStatus.DEGRADED}
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()


def test_health_checks_count_as_heartbeats_and_failures_degrade(remote_gpu: RemoteGpu, db: None) -> None:
    issued = _register_remote(remote_gpu)
    long_ago = timezone.now() - timedelta(minutes=5)
    Server.objects.filter(pk=issued.server.pk).update(last_heartbeat_at=long_ago, status=ServerStatus.DEGRADED)
    assert servers_poll_health() == 1
    server = Server.objects.get(pk=issued.server.pk)
    assert server.status == ServerStatus.ONLINE and server.last_heartbeat_at > long_ago
    remote_gpu.health_status = 500
    Server.objects.filter(pk=server.pk).update(last_heartbeat_at=long_ago)
    servers_poll_health()
    assert Server.objects.get(pk=server.pk).status == ServerStatus.DEGRADED
    assert servers_mark_silent_offline() == 1
    assert Server.objects.get(pk=server.pk).status == ServerStatus.OFFLINE


def test_a_server_given_an_api_key_gets_it_with_jobs_and_health_checks(
    owner: User, worker: InProcessWorker, remote_gpu: RemoteGpu
) -> None:
    issued = _register_remote(remote_gpu, api_key="server-api-key")
    worker.wait_for(_submit(owner).pk, states={TaskState.RECEIVED})
    _eventually(lambda: remote_gpu.authorizations)
    Server.objects.filter(pk=issued.server.pk).update(last_heartbeat_at=timezone.now() - timedelta(minutes=5))
    servers_poll_health()
    assert remote_gpu.authorizations == ["Bearer server-api-key"]
    assert remote_gpu.health_authorizations == ["Bearer server-api-key"]


@pytest.fixture
def claimed(owner: User, remote_gpu: RemoteGpu, db: None) -> tuple[Task, str]:
    """A job claimed for the remote server, as the forwarding actor leaves it."""
    issued = _register_remote(remote_gpu)
    task = _submit(owner)
    assert services.task_claim(
        task_id=task.pk, worker=remote_worker_name(issued.server), queue_name=issued.server.queue_name
    )
    return Task.objects.get(pk=task.pk), issued.key


def test_reports_follow_the_state_machine(claimed: tuple[Task, str]) -> None:
    task, key = claimed
    url = f"/api/v1/tasks/{task.pk}"
    client = _key_client(key)
    response = client.put(
        url, {"state": "FAILED", "error": {"code": "CUDA_OOM", "message": "out of memory"}}, format="json"
    )
    assert response.status_code == 200 and response.json()["state"] == "FAILURE"
    assert response.json()["error"] == {"code": "CUDA_OOM", "message": "out of memory"}
    response = client.put(url, {"state": "SUCCESS"}, format="json")
    assert response.status_code == 409
    assert Task.objects.get(pk=task.pk).state == TaskState.FAILURE


def test_reports_refuse_bad_input_naming_the_field(claimed: tuple[Task, str]) -> None:
    task, key = claimed
    url = f"/api/v1/tasks/{task.pk}"
    for body, field in (
        ({"state": "EXPLODED"}, "state"),
        ({"progress": 1.5}, "progress"),
        ({}, "state"),
        ({"state": "SUCCESS", "status": "FAILED"}, "state"),
        ({"state": "STARTED", "eta": 3}, "eta"),
    ):
        response = _key_client(key).put(url, body, format="json")
        assert response.status_code == 400 and field in response.json()["fields"], (body, response.content)
    response = _key_client(key).put(url, {"state": "SUCCESS", "attempt": 7}, format="json")
    assert response.status_code == 409
    assert Task.objects.get(pk=task.pk).state == TaskState.RECEIVED


def test_only_the_assigned_server_may_report_on_a_job(
    claimed: tuple[Task, str], client: APIClient, remote_gpu: RemoteGpu
) -> None:
    task, _ = claimed
    other = server_register(name="other-gpu", predict_url=f"{remote_gpu.url}/predict", capabilities=[])
    url = f"/api/v1/tasks/{task.pk}"
    assert _key_client(other.key).put(url, {"state": "SUCCESS"}, format="json").status_code == 404
    assert client.put(url, {"state": "SUCCESS"}, format="json").status_code == 403  # the owner is no server
    assert APIClient().put(url, {"state": "SUCCESS"}, format="json").status_code == 401
    assert (
        _key_client(other.key).put("/api/v1/tasks/not-a-uuid", {"state": "SUCCESS"}, format="json").status_code == 404
    )
    assert Task.objects.get(pk=task.pk).state == TaskState.RECEIVED


def test_a_cancelled_job_tells_the_remote_server_and_ends_revoked(claimed: tuple[Task, str]) -> None:
    task, key = claimed
    services.task_cancel(task=task)
    url = f"/api/v1/tasks/{task.pk}"
    response = _key_client(key).put(url, {"state": "STARTED"}, format="json")
    assert response.status_code == 409
    assert Task.objects.get(pk=task.pk).state == TaskState.REVOKED
