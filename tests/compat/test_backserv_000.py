"""Back.Serv's original API (shared/seeds/000_*.txt), replayed: /submit_task,
/query_task/<ticket_id>, /cancel_task/<ticket_id>, errors {error, message}."""

from __future__ import annotations

import socket
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from rest_framework.test import APIClient

from backserv_site.management.commands.serve import Command as ServeCommand
from generation.specs import TASK_TYPES
from servers.services import server_register_worker
from tasks import services
from tasks.compat.backserv.views import STATUS_NAMES
from tasks.models import Task, TaskState
from tests.conftest import InProcessWorker, wait_for_state

EXAMPLE = {"task_type": "image_creation", "task_params": {"prompt": "a beautiful sunset"}, "user_id": "user123"}
# The document's "Task Types and Parameters" section, one body per type.
TYPE_EXAMPLES = {
    "image_creation": {"prompt": "a beautiful sunset", "negative_prompt": "blurry", "width": 64, "height": 64},
    "image_upscale": {"image_url": "https://example.com/input.jpg", "scale_factor": 2},
    "face_swap": {"source_image": "https://example.com/a.jpg", "target_image": "https://example.com/b.jpg"},
    "video_creation": {"prompt": "a beautiful sunset", "duration": 1, "fps": 4},
}


def _submit(client: APIClient, body: dict[str, Any] | None = None) -> Any:
    return client.post("/submit_task", body if body is not None else EXAMPLE, format="json")


def _assert_error(response: Any, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"] == error and isinstance(body["message"], str) and body["message"], body
    return body


def test_submit_replays_the_documented_example(client: APIClient, settings: Any) -> None:
    settings.BACKSERV = {**settings.BACKSERV, "NODE_NAME": "gpu-node-1"}
    response = _submit(client)
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"ticket_id", "serv_name", "status"}
    assert body["serv_name"] == "gpu-node-1" and body["status"] == "Queueing"
    task = Task.objects.get(pk=uuid.UUID(body["ticket_id"]))
    assert task.owner == client.user and task.user_label == "user123"
    assert task.params["prompt"] == "a beautiful sunset"


def test_serv_name_is_the_server_the_job_was_routed_to(client: APIClient) -> None:
    server = server_register_worker(name="gpu-box-7", capabilities=["image_creation"], max_concurrent=1)
    ticket = _submit(client).json()
    assert ticket["serv_name"] == "gpu-box-7"
    assert Task.objects.get(pk=ticket["ticket_id"]).server == server


def test_serv_name_is_the_host_name_when_no_node_name_is_set(client: APIClient, settings: Any) -> None:
    settings.BACKSERV = {**settings.BACKSERV, "NODE_NAME": ""}
    assert _submit(client).json()["serv_name"] == socket.gethostname()


@pytest.mark.parametrize("task_type", sorted(TYPE_EXAMPLES))
def test_each_documented_task_type_is_queued_when_this_server_has_it(client: APIClient, task_type: str) -> None:
    response = _submit(client, {"task_type": task_type, "task_params": TYPE_EXAMPLES[task_type], "user_id": "u"})
    if task_type in TASK_TYPES:
        assert response.status_code == 202, response.content
        assert response.json()["status"] == "Queueing"
    else:
        body = _assert_error(response, 400, "unknown_task_type")
        assert "task_type" in body["fields"]


def test_the_documented_job_runs_and_its_query_tells_where_the_image_is(
    client: APIClient, worker: InProcessWorker, small_defaults: None
) -> None:
    ticket = _submit(client).json()["ticket_id"]
    worker.wait_for(ticket)
    response = client.get(f"/query_task/{ticket}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "result_info", "error_info", "started_at", "completed_at"}
    assert body["status"] == "Completed" and body["error_info"] is None
    assert body["started_at"] and body["completed_at"] and body["started_at"] <= body["completed_at"]
    location = urlsplit(body["result_info"])
    assert location.path.startswith("/media/outputs/") and location.path.endswith(".png")
    assert client.get(body["result_info"]).status_code == 200


def test_a_queued_ticket_has_no_times_and_no_result(client: APIClient) -> None:
    ticket = _submit(client).json()["ticket_id"]
    body = client.get(f"/query_task/{ticket}").json()
    assert body == {
        "status": "Queueing",
        "result_info": None,
        "error_info": None,
        "started_at": None,
        "completed_at": None,
    }


def test_the_states_map_one_way_to_the_documents_names() -> None:
    assert STATUS_NAMES == {
        "PENDING": "Queueing",
        "RECEIVED": "Processing",
        "STARTED": "Processing",
        "SUCCESS": "Completed",
        "FAILURE": "Failed",
        "REVOKED": "Cancelled",
        "TIMEOUT": "TimedOut",
    }
    assert set(STATUS_NAMES) == set(TaskState.values)


def test_a_failed_ticket_tells_the_error(client: APIClient) -> None:
    ticket = _submit(client).json()["ticket_id"]
    assert services.task_claim(task_id=ticket, worker="w")
    services.task_fail(task=Task.objects.get(pk=ticket), code="PIPELINE_ERROR", message="boom")
    body = client.get(f"/query_task/{ticket}").json()
    assert body["status"] == "Failed" and body["error_info"] == "PIPELINE_ERROR: boom"
    assert body["result_info"] is None and body["completed_at"]


def test_cancel_replays_the_documented_example(client: APIClient) -> None:
    ticket = _submit(client).json()["ticket_id"]
    response = client.post(f"/cancel_task/{ticket}")
    assert response.status_code == 200
    assert response.json() == {"status": "Cancelled", "message": "Task successfully cancelled"}
    assert client.get(f"/query_task/{ticket}").json()["status"] == "Cancelled"


def test_cancel_of_a_running_job_waits_for_the_worker_to_stop_it(
    client: APIClient, worker: InProcessWorker, small_defaults: None, settings: Any
) -> None:
    # Generous: a loaded machine can take long over one step; the job stops at its next.
    settings.BACKSERV = {**settings.BACKSERV, "CANCEL_WAIT_SECONDS": 60.0}
    body = {**EXAMPLE, "task_params": {"prompt": "a long one", "steps": 100}}
    ticket = _submit(client, body).json()["ticket_id"]
    wait_for_state(ticket, {TaskState.STARTED})
    response = client.post(f"/cancel_task/{ticket}")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "Cancelled", "message": "Task successfully cancelled"}
    assert Task.objects.get(pk=ticket).state == TaskState.REVOKED


def test_cancel_of_a_job_whose_worker_does_not_stop_in_time_is_accepted(client: APIClient, settings: Any) -> None:
    settings.BACKSERV = {**settings.BACKSERV, "CANCEL_WAIT_SECONDS": 0.2}
    ticket = _submit(client).json()["ticket_id"]
    assert services.task_claim(task_id=ticket, worker="w")
    response = client.post(f"/cancel_task/{ticket}")
    assert response.status_code == 202
    assert response.json()["status"] == "Processing"
    assert Task.objects.get(pk=ticket).cancel_requested


def test_cancel_of_a_finished_job_is_a_400(client: APIClient) -> None:
    ticket = _submit(client).json()["ticket_id"]
    client.post(f"/cancel_task/{ticket}")
    body = _assert_error(client.post(f"/cancel_task/{ticket}"), 400, "state_conflict")
    assert "REVOKED" in body["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"task_params": {"prompt": "a"}, "user_id": "u"}, "task_type"),
        ({"task_type": "image_creation", "user_id": "u"}, "task_params"),
        ({"task_type": "image_creation", "task_params": {"prompt": "a"}}, "user_id"),
        ({**EXAMPLE, "task_type": "teleport"}, "task_type"),
        ({**EXAMPLE, "task_params": {}}, "task_params.prompt"),
        ({**EXAMPLE, "task_params": {"prompt": "a", "width": 65}}, "task_params.width"),
        ({**EXAMPLE, "task_params": "a prompt"}, "task_params"),
    ],
)
def test_it_refuses_bad_input_in_the_documents_error_shape(client: APIClient, body: dict[str, Any], field: str) -> None:
    response = _submit(client, body)
    assert response.status_code == 400
    error = response.json()
    assert set(error) >= {"error", "message"} and field in error["fields"], error
    assert error["message"]


@pytest.mark.parametrize("method", ["get", "post"])
def test_another_users_or_an_unknown_ticket_is_a_404(client: APIClient, other_client: APIClient, method: str) -> None:
    ticket = _submit(client).json()["ticket_id"]
    route = "/query_task/" if method == "get" else "/cancel_task/"
    for someone_elses in (ticket, str(uuid.uuid4()), "abc123"):
        _assert_error(getattr(other_client, method)(route + someone_elses), 404, "not_found")
    assert Task.objects.get(pk=ticket).state == TaskState.PENDING


def test_it_refuses_anonymous_and_bad_tokens(anonymous_client: APIClient, client: APIClient) -> None:
    ticket = _submit(client).json()["ticket_id"]
    bad_token = APIClient(HTTP_AUTHORIZATION="Bearer bs_nope_nope")
    for caller, error in ((anonymous_client, "not_authenticated"), (bad_token, "authentication_failed")):
        _assert_error(caller.post("/submit_task", EXAMPLE, format="json"), 401, error)
        assert caller.get(f"/query_task/{ticket}").status_code == 401
        assert caller.post(f"/cancel_task/{ticket}").status_code == 401
    assert Task.objects.count() == 1


def test_serve_listens_on_the_documents_port_when_asked() -> None:
    options = ServeCommand().create_parser("manage.py", "serve").parse_args(["--port", "4093"])
    assert options.port == 4093


def test_the_routes_take_a_trailing_slash_too(client: APIClient) -> None:
    ticket = client.post("/submit_task/", EXAMPLE, format="json").json()["ticket_id"]
    assert client.get(f"/query_task/{ticket}/").json()["status"] == "Queueing"
    assert client.post(f"/cancel_task/{ticket}/").json()["status"] == "Cancelled"
