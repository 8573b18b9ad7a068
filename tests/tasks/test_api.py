"""REST v1 jobs API without a running worker: submit, read, list, cancel, retry, delete."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from rest_framework.test import APIClient

from tasks import services
from tasks.models import Task, TaskState

SUBMIT = "/api/v1/tasks"
GOOD = {"task_type": "image_creation", "params": {"prompt": "a beautiful sunset", "width": 64, "height": 64}}


def _submit(client: APIClient, body: dict[str, Any] | None = None) -> Any:
    return client.post(SUBMIT, body if body is not None else GOOD, format="json")


def _fail(task_id: str) -> None:
    assert services.task_claim(task_id=task_id, worker="w")
    task = Task.objects.get(pk=task_id)
    services.task_fail(task=task, code="PIPELINE_ERROR", message="boom")


def test_submit_answers_202_with_the_job(client: APIClient) -> None:
    response = _submit(client, {**GOOD, "priority": 7, "user_id": "user123"})
    assert response.status_code == 202
    body = response.json()
    uuid.UUID(body["task_id"])
    assert body["state"] == "PENDING"
    assert body["task_type"] == "image_creation"
    assert body["priority"] == 7
    assert body["user_id"] == "user123"
    assert body["progress"] == 0.0
    assert body["result"] is None and body["error"] is None
    assert body["submitted_at"] and body["started_at"] is None and body["completed_at"] is None
    assert body["params"]["width"] == 64 and isinstance(body["params"]["seed"], int)


@pytest.mark.parametrize(
    "body",
    [
        {"task_name": "image_creation", "kwargs": {"prompt": "a"}},
        {"task_type": "image_creation", "task_params": {"prompt": "a"}, "user_id": "user123"},
    ],
    ids=["task-manager names", "back.serv names"],
)
def test_submit_accepts_the_names_of_the_served_documents(client: APIClient, body: dict[str, Any]) -> None:
    response = _submit(client, body)
    assert response.status_code == 202, response.json()
    assert Task.objects.get(pk=response.json()["task_id"]).params["prompt"] == "a"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"params": {"prompt": "a"}}, "task_type"),
        ({"task_type": "teleport", "params": {}}, "task_type"),
        ({"task_type": "image_creation", "params": {}}, "params.prompt"),
        ({"task_type": "image_creation", "params": {"prompt": "a", "width": 65}}, "params.width"),
        ({"task_type": "image_creation", "params": {"prompt": "a", "height": 100000}}, "params.height"),
        ({"task_type": "image_creation", "params": {"prompt": "a", "steps": 0}}, "params.steps"),
        ({"task_type": "image_creation", "params": {"prompt": "a", "steps": 10**6}}, "params.steps"),
        ({"task_type": "image_creation", "params": {"prompt": "a", "seed": -1}}, "params.seed"),
        ({"task_type": "image_creation", "params": {"prompt": "a", "stepz": 3}}, "params.stepz"),
        ({"task_type": "image_creation", "params": "a prompt"}, "params"),
        ({"task_type": "image_creation", "params": {"prompt": "a"}, "priority": 11}, "priority"),
        ({"task_type": "image_creation", "params": {"prompt": "a"}, "priority": "high"}, "priority"),
        ({"task_type": "image_creation", "params": {"prompt": "a"}, "kwargs": {"prompt": "b"}}, "kwargs"),
        ({"task_type": "image_creation", "task_name": "video_creation", "params": {"prompt": "a"}}, "task_type"),
        ({"task_type": "image_creation", "params": {"prompt": "a"}, "colour": 1}, "colour"),
        ({"task_name": "image_creation", "kwargs": {"prompt": "a"}, "countdown": 5}, "countdown"),
    ],
)
def test_it_refuses_bad_input_naming_the_field(client: APIClient, body: dict[str, Any], field: str) -> None:
    response = _submit(client, body)
    assert response.status_code == 400, response.content
    error = response.json()
    assert field in error["fields"], error
    assert error["code"] in {"invalid", "invalid_params", "unknown_task_type"}
    assert error["detail"]
    assert not Task.objects.exists()


def test_it_refuses_a_body_that_is_not_json(client: APIClient) -> None:
    response = client.post(SUBMIT, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_it_refuses_anonymous_and_bad_tokens(anonymous_client: APIClient, client: APIClient) -> None:
    task_id = _submit(client).json()["task_id"]
    for credentials in (None, "Bearer nope", "Bearer bs_deadbeef_wrongsecret", "Basic abc"):
        if credentials:
            anonymous_client.credentials(HTTP_AUTHORIZATION=credentials)
        for method, url in [
            ("post", SUBMIT),
            ("get", SUBMIT),
            ("get", f"{SUBMIT}/{task_id}"),
            ("post", f"{SUBMIT}/{task_id}/cancel"),
            ("post", f"{SUBMIT}/{task_id}/retry"),
            ("delete", f"{SUBMIT}/{task_id}"),
        ]:
            response = getattr(anonymous_client, method)(url, GOOD, format="json")
            assert response.status_code == 401, (credentials, method, url)
            assert response.json()["code"] in {"not_authenticated", "authentication_failed"}
    assert Task.objects.count() == 1


def test_a_token_for_the_other_keyword_works(owner: Any) -> None:
    from accounts.services import api_token_create

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=owner).secret}")
    assert client.get(SUBMIT).status_code == 200


def test_another_users_job_is_not_found(client: APIClient, other_client: APIClient) -> None:
    task_id = _submit(client).json()["task_id"]
    for method, url in [
        ("get", f"{SUBMIT}/{task_id}"),
        ("post", f"{SUBMIT}/{task_id}/cancel"),
        ("post", f"{SUBMIT}/{task_id}/retry"),
        ("delete", f"{SUBMIT}/{task_id}"),
    ]:
        response = getattr(other_client, method)(url)
        assert response.status_code == 404, (method, url)
        assert response.json()["code"] == "not_found"
    assert other_client.get(SUBMIT).json()["count"] == 0
    assert Task.objects.get(pk=task_id).state == TaskState.PENDING


@pytest.mark.parametrize("task_id", ["not-a-uuid", str(uuid.uuid4()), "0" * 100])
def test_an_unknown_or_malformed_id_is_not_found(client: APIClient, task_id: str) -> None:
    assert client.get(f"{SUBMIT}/{task_id}").status_code == 404


def test_the_list_is_paginated_newest_first_and_filtered(client: APIClient) -> None:
    ids = [_submit(client).json()["task_id"] for _ in range(3)]
    services.task_cancel(task=Task.objects.get(pk=ids[0]))

    page = client.get(SUBMIT, {"limit": 2}).json()
    assert page["count"] == 3
    assert [job["task_id"] for job in page["results"]] == [ids[2], ids[1]]
    assert page["next"]

    revoked = client.get(SUBMIT, {"state": "REVOKED"}).json()
    assert [job["task_id"] for job in revoked["results"]] == [ids[0]]
    assert client.get(SUBMIT, {"task_type": "image_creation"}).json()["count"] == 3


def test_a_bad_filter_value_is_a_400_naming_it(client: APIClient) -> None:
    response = client.get(SUBMIT, {"state": "SLEEPING"})
    assert response.status_code == 400
    assert "state" in response.json()["fields"]


@pytest.mark.parametrize("action", ["cancel", "retry"])
def test_the_actions_refuse_body_fields(client: APIClient, action: str) -> None:
    task_id = _submit(client).json()["task_id"]

    response = client.post(f"{SUBMIT}/{task_id}/{action}", {"force": True}, format="json")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["force"]
    assert Task.objects.get(pk=task_id).state == TaskState.PENDING


def test_cancel_of_a_queued_job_revokes_it(client: APIClient) -> None:
    task_id = _submit(client).json()["task_id"]
    response = client.post(f"{SUBMIT}/{task_id}/cancel")
    assert response.status_code == 200
    assert response.json()["state"] == "REVOKED"
    assert response.json()["completed_at"]


def test_cancel_of_a_running_job_flags_it_for_the_worker(client: APIClient) -> None:
    task_id = _submit(client).json()["task_id"]
    services.task_claim(task_id=task_id, worker="w")
    response = client.post(f"{SUBMIT}/{task_id}/cancel")
    assert response.status_code == 200
    assert response.json()["state"] == "RECEIVED"
    assert response.json()["cancel_requested"] is True


def test_cancel_of_a_finished_job_is_a_409(client: APIClient) -> None:
    task_id = _submit(client).json()["task_id"]
    _fail(task_id)
    response = client.post(f"{SUBMIT}/{task_id}/cancel")
    assert response.status_code == 409
    assert response.json()["code"] == "state_conflict"


def test_retry_of_a_failed_job_queues_it_again(client: APIClient) -> None:
    task_id = _submit(client).json()["task_id"]
    _fail(task_id)
    response = client.post(f"{SUBMIT}/{task_id}/retry")
    assert response.status_code == 202
    assert response.json()["state"] == "PENDING"
    assert response.json()["error"] is None


@pytest.mark.parametrize("state", ["PENDING", "RECEIVED"])
def test_retry_is_a_409_unless_the_job_failed_timed_out_or_was_revoked(client: APIClient, state: str) -> None:
    task_id = _submit(client).json()["task_id"]
    if state == "RECEIVED":
        services.task_claim(task_id=task_id, worker="w")
    response = client.post(f"{SUBMIT}/{task_id}/retry")
    assert response.status_code == 409
    assert Task.objects.get(pk=task_id).state == state


def test_the_error_of_a_failed_job_has_a_code_and_a_message(client: APIClient) -> None:
    task_id = _submit(client).json()["task_id"]
    _fail(task_id)
    assert client.get(f"{SUBMIT}/{task_id}").json()["error"] == {"code": "PIPELINE_ERROR", "message": "boom"}


def test_delete_removes_the_job_and_answers_like_the_task_manager(client: APIClient) -> None:
    task_id = _submit(client).json()["task_id"]
    response = client.delete(f"{SUBMIT}/{task_id}")
    assert response.status_code == 200
    assert response.json() == {"status": "success", "message": f"Task {task_id} cleaned up"}
    assert not Task.objects.filter(pk=task_id).exists()
    assert client.get(f"{SUBMIT}/{task_id}").status_code == 404


def test_delete_of_a_running_job_is_a_409(client: APIClient) -> None:
    task_id = _submit(client).json()["task_id"]
    services.task_claim(task_id=task_id, worker="w")
    assert client.delete(f"{SUBMIT}/{task_id}").status_code == 409
    assert Task.objects.filter(pk=task_id).exists()
