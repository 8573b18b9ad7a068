"""The distributed-system document (shared/seeds/004_*.txt), replayed: /api/task (create,
status, update by the server running the job, retry, cancel) with its JSON bodies, the
error examples {error, details}, JWT authentication and the rate-limit headers. The
servers, stats and docs routes are in test_distributed_004_servers.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests
from rest_framework.test import APIClient

from accounts.models import User
from servers.models import Server
from servers.remote import remote_worker_name
from servers.services import IssuedServer, server_register
from tasks import services
from tasks.compat.distributed.base import STATUS_NAMES
from tasks.models import TERMINAL_STATES, Task, TaskState
from tests.conftest import InProcessWorker, wait_for_state
from tests.servers.conftest import RemoteGpu

# The document's request bodies, word for word.
CREATE = {
    "type": "video-processing",
    "priority": 1,
    "payload": {
        "mimeType": "video/mp4",
        "model": "standard",
        "video_quality": "1080p",
        "video_url": "https://example.com/video.mp4",
        "enable_upscale": False,
    },
    "capabilities": ["video"],
    "async": True,
}
# Its JavaScript, Python and cURL examples all send this one.
SDK_CREATE = {"type": "video-processing", "priority": 1, "payload": {"video_url": "https://example.com/video.mp4"}}
UPDATE = {"status": "COMPLETED", "result": {"output_url": "https://example.com/processed.mp4", "duration": 120}}
REGISTER = {
    "name": "gpu-server-01",
    "endpoints": {
        "predict": "https://server1.example.com/predict",
        "health": "https://server1.example.com/health",
        "metrics": "https://server1.example.com/metrics",
    },
    "apiKey": "server-api-key",
    "maxConcurrent": 10,
    "capabilities": ["video", "image"],
    "groups": ["production"],
    "priority": 1,
}
IMAGE = {"type": "image-creation", "priority": 5, "payload": {"prompt": "a fox", "width": 64, "height": 64}}
UNKNOWN_ID = "550e8400-e29b-41d4-a716-446655440000"
JwtClient = Callable[..., APIClient]


@pytest.fixture
def remote_gpu() -> Any:
    remote = RemoteGpu()
    yield remote
    remote.close()


@pytest.fixture
def user_jwt(owner: User, jwt_client: JwtClient) -> APIClient:
    return jwt_client(owner)


@pytest.fixture
def admin_jwt(staff: User, jwt_client: JwtClient) -> APIClient:
    return jwt_client(staff, role="admin")


def _register(admin: APIClient, **changes: Any) -> dict[str, Any]:
    response = admin.post("/api/servers", {**REGISTER, **changes}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def _error(response: Any, status: int, error: str, details: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"] == error and isinstance(body["details"], str) and body["details"], body
    if details is not None:
        assert body["details"] == details
    return body


def _ms_now() -> int:
    return int(time.time() * 1000)


def test_create_replays_the_documented_request_and_answers_its_fields(
    user_jwt: APIClient, admin_jwt: APIClient
) -> None:
    server_id = _register(admin_jwt)["serverId"]
    before = _ms_now()
    response = user_jwt.post("/api/task", CREATE, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    uuid.UUID(body["id"])
    assert body["status"] == "PENDING"
    for field in ("createdAt", "updatedAt"):
        assert isinstance(body[field], int) and before - 1000 <= body[field] <= _ms_now() + 1000
    assert response["Location"] == f"/api/task/{body['id']}"
    task = Task.objects.get(pk=body["id"])
    # Routed to the server that declares "video"; its payload goes there unchanged.
    assert task.task_type == "video-processing" and task.capabilities == ["video"]
    assert str(task.server_id) == server_id and task.params == CREATE["payload"] and task.priority == 1


def test_the_sdk_example_runs_on_the_documented_server_declaring_its_family(
    user_jwt: APIClient, admin_jwt: APIClient
) -> None:
    body = _error(user_jwt.post("/api/task", SDK_CREATE, format="json"), 400, "Invalid request")
    assert "type" in body["fields"] and "image_creation" in body["details"]
    # The document registers a server with capabilities video and image, then creates
    # video-processing jobs without capabilities: the type's family is what it needs.
    _register(admin_jwt)
    response = user_jwt.post("/api/task", SDK_CREATE, format="json")
    assert response.status_code == 201, response.content
    task = Task.objects.get(pk=response.json()["id"])
    assert task.capabilities == ["video"] and task.server.name == REGISTER["name"]


def test_a_server_declaring_the_type_itself_is_preferred_over_its_family(
    user_jwt: APIClient, admin_jwt: APIClient
) -> None:
    _register(admin_jwt)
    _register(admin_jwt, name="transcoder-01", capabilities=["video-processing"])
    response = user_jwt.post("/api/task", SDK_CREATE, format="json")
    assert response.status_code == 201, response.content
    task = Task.objects.get(pk=response.json()["id"])
    assert task.capabilities == ["video-processing"] and task.server.name == "transcoder-01"


def test_a_type_no_server_runs_is_a_400_naming_type_and_the_accepted_types(user_jwt: APIClient) -> None:
    body = _error(user_jwt.post("/api/task", CREATE, format="json"), 400, "Invalid request")
    assert list(body["fields"]) == ["type"]
    for task_type in ("image_creation", "image_upscale", "video_creation"):
        assert task_type in body["details"]
    assert Task.objects.count() == 0


@pytest.mark.parametrize("spelling", ["image-creation", "image_creation", "IMAGE-CREATION"])
def test_backserv_task_types_run_here_with_the_payload_as_params(user_jwt: APIClient, spelling: str) -> None:
    response = user_jwt.post("/api/task", {**IMAGE, "type": spelling}, format="json")
    assert response.status_code == 201, response.content
    task = Task.objects.get(pk=response.json()["id"])
    assert task.task_type == "image_creation" and task.params["prompt"] == "a fox" and task.capabilities == []


def test_the_whole_documented_flow_through_a_remote_server(
    owner: User,
    staff: User,
    jwt_client: JwtClient,
    worker: InProcessWorker,
    remote_gpu: RemoteGpu,
    live_server: Any,
) -> None:
    """Register (admin), create (user), the job is POSTed to the server with its apiKey,
    the server PUTs the document's update with its key, the status reads COMPLETED."""
    admin, user = jwt_client(staff, role="admin"), jwt_client(owner)
    endpoints = {"predict": f"{remote_gpu.url}/predict", "health": f"{remote_gpu.url}/health", "metrics": ""}
    registered = _register(admin, endpoints=endpoints)
    key = registered["key"]

    def run_job(job: dict[str, Any]) -> None:
        url = f"{live_server.url}/api/task/{job['task_id']}"
        headers = {"Authorization": f"Bearer {key}"}
        for body in ({"status": "PROCESSING", "progress": 45}, UPDATE):
            response = requests.put(url, json=body, headers=headers, timeout=10)
            assert response.status_code == 200, response.text

    remote_gpu.on_job = run_job
    task_id = user.post("/api/task", CREATE, format="json").json()["id"]
    finished = wait_for_state(task_id, TERMINAL_STATES)
    assert finished.state == TaskState.SUCCESS, finished.error_message
    [job] = remote_gpu.jobs
    assert job["task_type"] == "video-processing" and job["params"] == CREATE["payload"]
    assert remote_gpu.authorizations == ["Bearer server-api-key"]
    body = user.get(f"/api/task/{task_id}").json()
    assert body["status"] == "COMPLETED" and body["progress"] == 100
    assert body["serverId"] == registered["serverId"] and body["result"] == UPDATE["result"]
    assert body["createdAt"] <= body["updatedAt"]


def test_get_task_answers_the_documented_fields_and_types(user_jwt: APIClient) -> None:
    task_id = user_jwt.post("/api/task", IMAGE, format="json").json()["id"]
    response = user_jwt.get(f"/api/task/{task_id}")
    assert response.status_code == 200
    body = response.json()
    assert {"id", "status", "progress", "serverId", "createdAt", "updatedAt"} <= set(body)
    assert body["id"] == task_id and body["status"] == "PENDING" and body["progress"] == 0
    assert body["serverId"] is None  # no server registered: the local workers' shared queue
    assert isinstance(body["createdAt"], int) and isinstance(body["updatedAt"], int)


@pytest.fixture
def claimed(owner: User, db: None) -> tuple[Task, IssuedServer]:
    """A job of the document's type, claimed for a remote server as the forwarding
    actor leaves it."""
    issued = server_register(
        name="gpu-server-01", predict_url="http://gpu.example/predict", capabilities=[], other_capabilities=["video"]
    )
    task = services.task_submit(
        owner=owner, task_type="video-processing", params=CREATE["payload"], priority=1, capabilities=["video"]
    )
    assert services.task_claim(
        task_id=task.pk, worker=remote_worker_name(issued.server), queue_name=issued.server.queue_name
    )
    return Task.objects.get(pk=task.pk), issued


def _key_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_update_replays_the_documented_body_with_the_servers_key(claimed: tuple[Task, IssuedServer]) -> None:
    task, issued = claimed
    response = _key_client(issued.key).put(f"/api/task/{task.pk}", UPDATE, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "COMPLETED" and body["result"] == UPDATE["result"] and body["progress"] == 100


def test_only_the_server_running_the_job_may_update_it(
    claimed: tuple[Task, IssuedServer], user_jwt: APIClient, admin_jwt: APIClient, client: APIClient
) -> None:
    task, _ = claimed
    url = f"/api/task/{task.pk}"
    other = server_register(name="other-gpu", predict_url="http://other.example/predict", capabilities=[])
    _error(_key_client(other.key).put(url, UPDATE, format="json"), 404, "Not found", f"Task not found: {task.pk}")
    # A user's token or JWT, even an admin's, cannot complete jobs.
    for caller in (user_jwt, admin_jwt, client):
        _error(caller.put(url, UPDATE, format="json"), 403, "Forbidden")
    _error(APIClient().put(url, UPDATE, format="json"), 401, "Unauthorized")
    assert Task.objects.get(pk=task.pk).state == TaskState.RECEIVED


@pytest.mark.parametrize(
    ("body", "field"),
    [({"status": "EXPLODED"}, "status"), ({"progress": 101}, "progress"), ({}, "status"), ({"error": 5}, "error")],
)
def test_update_refuses_bad_input_naming_the_field(
    claimed: tuple[Task, IssuedServer], body: dict[str, Any], field: str
) -> None:
    task, issued = claimed
    error = _error(_key_client(issued.key).put(f"/api/task/{task.pk}", body, format="json"), 400, "Invalid request")
    assert field in error["fields"]


def test_retry_replays_the_documented_answer(claimed: tuple[Task, IssuedServer], user_jwt: APIClient) -> None:
    task, issued = claimed
    failed = {"status": "FAILED", "error": "decoder crashed"}
    assert _key_client(issued.key).put(f"/api/task/{task.pk}", failed, format="json").status_code == 200
    assert user_jwt.get(f"/api/task/{task.pk}").json()["status"] == "FAILED"
    response = user_jwt.post(f"/api/task/{task.pk}/retry")
    assert response.status_code == 200
    assert response.json() == {"message": "Task queued for retry", "taskId": str(task.pk)}
    assert Task.objects.get(pk=task.pk).state == TaskState.PENDING
    body = _error(user_jwt.post(f"/api/task/{task.pk}/retry"), 400, "Invalid request")
    assert body["details"].startswith("Task is PENDING; only CANCELLED, FAILED, TIMEOUT tasks can be retried")


def test_cancel_replays_the_documented_answer(user_jwt: APIClient) -> None:
    task_id = user_jwt.post("/api/task", IMAGE, format="json").json()["id"]
    response = user_jwt.post(f"/api/task/{task_id}/cancel")
    assert response.status_code == 200
    assert response.json() == {"message": "Task cancelled", "taskId": task_id}
    assert user_jwt.get(f"/api/task/{task_id}").json()["status"] == "CANCELLED"
    body = _error(user_jwt.post(f"/api/task/{task_id}/cancel"), 400, "Invalid request")
    assert body["details"].startswith("Task is CANCELLED;")


def test_cancel_of_a_processing_job_stops_it(
    claimed: tuple[Task, IssuedServer], user_jwt: APIClient, settings: Any
) -> None:
    settings.BACKSERV = {**settings.BACKSERV, "CANCEL_WAIT_SECONDS": 0.1}
    task, issued = claimed
    _key_client(issued.key).put(f"/api/task/{task.pk}", {"status": "PROCESSING"}, format="json")
    response = user_jwt.post(f"/api/task/{task.pk}/cancel")
    # The remote server stops at its next report; until then the cancel is requested.
    assert response.status_code == 202 and response.json()["taskId"] == str(task.pk)
    assert Task.objects.get(pk=task.pk).cancel_requested
    assert (
        _key_client(issued.key).put(f"/api/task/{task.pk}", {"status": "CANCELLED"}, format="json").status_code == 200
    )
    assert user_jwt.get(f"/api/task/{task.pk}").json()["status"] == "CANCELLED"


def test_async_false_answers_once_the_job_is_done(
    owner: User, jwt_client: JwtClient, worker: InProcessWorker, small_defaults: None
) -> None:
    response = jwt_client(owner).post("/api/task", {**IMAGE, "async": False}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "COMPLETED" and body["progress"] == 100
    assert body["result"]["outputs"][0]["url"].startswith("http")


def test_the_statuses_map_one_way_to_the_documents_names() -> None:
    assert STATUS_NAMES == {
        "PENDING": "PENDING",
        "RECEIVED": "PROCESSING",
        "STARTED": "PROCESSING",
        "SUCCESS": "COMPLETED",
        "FAILURE": "FAILED",
        "REVOKED": "CANCELLED",
        "TIMEOUT": "TIMEOUT",
    }
    assert set(STATUS_NAMES) == set(TaskState.values)


# The document's error examples ------------------------------------------------------------


def test_400_replays_the_documented_example(user_jwt: APIClient) -> None:
    body = {key: value for key, value in IMAGE.items() if key != "priority"}
    error = _error(user_jwt.post("/api/task", body, format="json"), 400, "Invalid request")
    assert error["details"] == "Missing required field: priority" and "priority" in error["fields"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**IMAGE, "priority": 11}, "priority"),
        ({**IMAGE, "type": ""}, "type"),
        ({**IMAGE, "type": "../etc"}, "type"),
        ({**IMAGE, "payload": "prompt"}, "payload"),
        ({**IMAGE, "payload": {}}, "payload.prompt"),
        ({**IMAGE, "payload": {"prompt": "x", "width": 65}}, "payload.width"),
        ({**IMAGE, "payload": {"prompt": "x", "colour": "red"}}, "payload.colour"),
        ({**IMAGE, "async": "sometimes"}, "async"),
        ({**IMAGE, "capabilities": "video"}, "capabilities"),
    ],
)
def test_it_refuses_bad_input_with_a_400_naming_the_field(
    user_jwt: APIClient, body: dict[str, Any], field: str
) -> None:
    error = _error(user_jwt.post("/api/task", body, format="json"), 400, "Invalid request")
    assert field in error["fields"], error


def test_401_replays_the_documented_example_for_an_expired_jwt(owner: User, jwt_client: JwtClient) -> None:
    expired = jwt_client(owner, expires_in=timedelta(minutes=5), issued_ago=timedelta(minutes=10))
    response = expired.post("/api/task", IMAGE, format="json")
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized", "details": "Invalid or expired token"}
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_jwt_signed_with_another_secret_or_for_nobody_is_refused(
    owner: User, other_user: User, jwt_client: JwtClient
) -> None:
    forged = jwt_client(owner, secret="someone-elses-secret-0123456789-abcdefghij")
    _error(forged.get("/api/task/" + UNKNOWN_ID), 401, "Unauthorized", "Invalid or expired token")
    gone = jwt_client(other_user)
    other_user.delete()
    _error(gone.get("/api/task/" + UNKNOWN_ID), 401, "Unauthorized", "Invalid or expired token")


def test_jwts_are_refused_while_no_secret_is_configured(owner: User, jwt_client: JwtClient, settings: Any) -> None:
    minted = jwt_client(owner)
    settings.JWT_SECRET = ""
    _error(minted.post("/api/task", IMAGE, format="json"), 401, "Unauthorized", "Invalid or expired token")


def test_anonymous_callers_get_the_documented_401(anonymous_client: APIClient) -> None:
    for response in (
        anonymous_client.post("/api/task", IMAGE, format="json"),
        anonymous_client.get(f"/api/task/{UNKNOWN_ID}"),
        anonymous_client.post(f"/api/task/{UNKNOWN_ID}/retry"),
        anonymous_client.post(f"/api/task/{UNKNOWN_ID}/cancel"),
    ):
        _error(response, 401, "Unauthorized")


def test_our_api_tokens_work_on_the_documents_routes_too(client: APIClient) -> None:
    response = client.post("/api/task", IMAGE, format="json")
    assert response.status_code == 201
    assert client.get(f"/api/task/{response.json()['id']}").status_code == 200


def test_404_replays_the_documented_example_for_another_users_or_an_unknown_task(
    user_jwt: APIClient, other_user: User, jwt_client: JwtClient
) -> None:
    task_id = user_jwt.post("/api/task", IMAGE, format="json").json()["id"]
    other = jwt_client(other_user)
    for unknown in (task_id, UNKNOWN_ID, "task_abc123"):
        expected = {"error": "Not found", "details": f"Task not found: {unknown}"}
        for response in (
            other.get(f"/api/task/{unknown}"),
            other.post(f"/api/task/{unknown}/retry"),
            other.post(f"/api/task/{unknown}/cancel"),
        ):
            assert response.status_code == 404 and response.json() == expected
    assert Task.objects.get(pk=task_id).state == TaskState.PENDING


def test_an_admin_sees_every_users_task(user_jwt: APIClient, admin_jwt: APIClient) -> None:
    task_id = user_jwt.post("/api/task", IMAGE, format="json").json()["id"]
    assert admin_jwt.get(f"/api/task/{task_id}").json()["id"] == task_id


def test_an_admin_role_is_not_honoured_for_a_user_who_is_not_staff(owner: User, jwt_client: JwtClient) -> None:
    with pytest.raises(ValueError, match="not staff"):
        jwt_client(owner, role="admin")


def test_jwts_open_only_the_documents_routes(user_jwt: APIClient) -> None:
    # Back.Serv's own API keeps its revocable, scoped tokens.
    assert user_jwt.get("/api/v1/tasks").status_code == 401


@pytest.mark.urls("tests.probe_urls")
@pytest.mark.parametrize("path", ["/api/stats/probe-crash", "/api/stats/probe-plain-crash"])
def test_500_replays_the_documented_example(user_jwt: APIClient, path: str) -> None:
    user_jwt.raise_request_exception = False
    response = user_jwt.get(path)
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error", "details": "An unexpected error occurred"}
    assert "boom" not in response.content.decode()


def test_unknown_sub_routes_answer_the_documents_404(user_jwt: APIClient) -> None:
    response = user_jwt.get(f"/api/task/{UNKNOWN_ID}/no-such-route")
    assert response.status_code == 404
    assert response.json() == {"error": "Not found", "details": f"No route /api/task/{UNKNOWN_ID}/no-such-route"}


# Rate limits -------------------------------------------------------------------------------


@pytest.fixture
def document_rates(settings: Any) -> None:
    """The document's limits, starting early in a minute so a test does not straddle two."""
    rates = {"user": "100/min", "task_create": "50/min", "server_registration": "10/min"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    into_minute = time.time() % 60
    if into_minute > 50:
        time.sleep(60.05 - into_minute)


def test_responses_carry_the_documents_rate_limit_headers(
    document_rates: None, user_jwt: APIClient, admin_jwt: APIClient
) -> None:
    created = user_jwt.post("/api/task", IMAGE, format="json")
    assert (created["X-RateLimit-Limit"], created["X-RateLimit-Remaining"]) == ("50", "49")
    read = user_jwt.get(f"/api/task/{created.json()['id']}")
    assert (read["X-RateLimit-Limit"], read["X-RateLimit-Remaining"]) == ("100", "98")
    reset = int(read["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 61
    registered = admin_jwt.post("/api/servers", REGISTER, format="json")
    assert (registered["X-RateLimit-Limit"], registered["X-RateLimit-Remaining"]) == ("10", "9")


def test_past_the_limit_comes_a_429_with_the_documents_body(
    document_rates: None, user_jwt: APIClient, settings: Any
) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "task_create": "2/min"},
    }
    for _ in range(2):
        assert user_jwt.post("/api/task", IMAGE, format="json").status_code == 201
    response = user_jwt.post("/api/task", IMAGE, format="json")
    _error(response, 429, "Too many requests")
    assert int(response["Retry-After"]) >= 1 and response["X-RateLimit-Remaining"] == "0"
    assert Task.objects.count() == 2
    assert Server.objects.count() == 0
