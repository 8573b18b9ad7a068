"""Idempotent submits, batch submits, queue position and ETA."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from tasks import selectors
from tasks.models import Task, TaskState

pytestmark = pytest.mark.django_db


def post(client: APIClient, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post("/api/v1/tasks", body, format="json", **headers)


def test_the_same_key_and_body_return_the_original_job(client: APIClient, job_body: Callable[..., dict]) -> None:
    first = post(client, job_body(), key="order-1")
    again = post(client, job_body(), key="order-1")

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json()["task_id"] == first.json()["task_id"]
    assert again["Idempotent-Replayed"] == "true"
    assert Task.objects.count() == 1


def test_the_same_key_with_another_body_is_a_conflict(client: APIClient, job_body: Callable[..., dict]) -> None:
    post(client, job_body(), key="order-1")
    other = job_body()
    other["params"]["prompt"] = "a different picture"

    response = post(client, other, key="order-1")

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_reused"
    assert Task.objects.count() == 1


def test_keys_are_per_owner(client: APIClient, other_client: APIClient, job_body: Callable[..., dict]) -> None:
    mine = post(client, job_body(), key="order-1")
    theirs = post(other_client, job_body(), key="order-1")

    assert theirs.status_code == 202
    assert theirs.json()["task_id"] != mine.json()["task_id"]


def test_a_key_older_than_a_day_makes_a_new_job(client: APIClient, job_body: Callable[..., dict]) -> None:
    first = post(client, job_body(), key="order-1")
    Task.objects.filter(pk=first.json()["task_id"]).update(submitted_at=timezone.now() - timedelta(hours=25))

    again = post(client, job_body(), key="order-1")

    assert again.status_code == 202
    assert again.json()["task_id"] != first.json()["task_id"]
    assert Task.objects.count() == 2


def test_it_refuses_a_too_long_key(client: APIClient, job_body: Callable[..., dict]) -> None:
    response = post(client, job_body(), key="k" * 256)

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["fields"]


def test_a_batch_accepts_the_valid_jobs_and_reports_the_bad_one(
    client: APIClient, job_body: Callable[..., dict]
) -> None:
    bad = job_body()
    bad["params"]["steps"] = 100000
    response = client.post(
        "/api/v1/tasks/batch", {"tasks": [job_body(), bad, job_body(priority=9), "x"]}, format="json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 2)
    assert [result["status"] for result in body["results"]] == [202, 400, 202, 400]
    assert "params.steps" in body["results"][1]["error"]["fields"]
    assert body["results"][1]["error"]["code"] == "invalid_params"
    assert body["results"][2]["task"]["priority"] == 9
    assert Task.objects.count() == 2


def test_a_batch_refuses_each_item_that_is_not_a_job_alone(client: APIClient, job_body: Callable[..., dict]) -> None:
    items = [None, job_body(), 7, [], {**job_body(), "colour": "red"}]

    response = client.post("/api/v1/tasks/batch", {"tasks": items}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (1, 4)
    assert [result["status"] for result in body["results"]] == [400, 202, 400, 400, 400]
    assert [result["index"] for result in body["results"]] == [0, 1, 2, 3, 4]
    for result in (body["results"][0], body["results"][2], body["results"][3]):
        assert result["error"]["code"] == "invalid" and result["error"]["detail"] == "Each job must be an object."
    assert list(body["results"][4]["error"]["fields"]) == ["colour"]
    assert Task.objects.count() == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"tasks": []}, "tasks"),
        ({}, "tasks"),
        ({"tasks": "all of them"}, "tasks"),
        ({"tasks": [{"task_type": "image_creation", "params": {"prompt": "a"}}], "sync": True}, "sync"),
    ],
)
def test_it_refuses_a_malformed_batch(client: APIClient, payload: dict, field: str) -> None:
    response = client.post("/api/v1/tasks/batch", payload, format="json")

    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_it_refuses_a_batch_over_the_limit(client: APIClient, job_body: Callable[..., dict]) -> None:
    response = client.post("/api/v1/tasks/batch", {"tasks": [job_body()] * 101}, format="json")

    assert response.status_code == 400
    assert "100" in response.json()["fields"]["tasks"][0]
    assert not Task.objects.exists()


def test_a_batch_needs_a_token(anonymous_client: APIClient, job_body: Callable[..., dict]) -> None:
    assert anonymous_client.post("/api/v1/tasks/batch", {"tasks": [job_body()]}, format="json").status_code == 401


def test_queue_position_follows_the_claim_order(client: APIClient, job_body: Callable[..., dict]) -> None:
    old_normal = post(client, job_body(priority=5)).json()["task_id"]
    new_normal = post(client, job_body(priority=5)).json()["task_id"]
    urgent = post(client, job_body(priority=9)).json()["task_id"]
    low = post(client, job_body(priority=1)).json()["task_id"]

    positions = {
        task_id: client.get(f"/api/v1/tasks/{task_id}").json()["queue_position"]
        for task_id in (urgent, old_normal, new_normal, low)
    }

    assert positions == {urgent: 0, old_normal: 1, new_normal: 2, low: 3}


def test_queue_position_and_eta_are_null_once_the_job_left_the_queue(
    client: APIClient, job_body: Callable[..., dict]
) -> None:
    task_id = post(client, job_body()).json()["task_id"]
    Task.objects.filter(pk=task_id).update(state=TaskState.STARTED)

    job = client.get(f"/api/v1/tasks/{task_id}").json()

    assert (job["queue_position"], job["eta_seconds"]) == (None, None)


def test_eta_comes_from_recent_runs_of_the_type(owner: User, client: APIClient, job_body: Callable[..., dict]) -> None:
    now = timezone.now()
    for seconds in (2, 4, 30):
        Task.objects.create(
            owner=owner,
            task_type="image_creation",
            queue_name="done",
            state=TaskState.SUCCESS,
            started_at=now - timedelta(seconds=seconds),
            completed_at=now,
        )
    first = post(client, job_body()).json()
    second = post(client, job_body()).json()

    assert first["eta_seconds"] == 4.0  # the median run, it is next
    assert second["eta_seconds"] == 8.0  # one job ahead in one lane, then its own


def test_the_run_times_an_eta_draws_on_are_read_again_once_they_are_old(
    owner: User, monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    now = timezone.now()

    def finished_run(seconds: int) -> None:
        Task.objects.create(
            owner=owner, task_type="image_creation", queue_name="done", state=TaskState.SUCCESS,
            started_at=now - timedelta(seconds=seconds), completed_at=now,
        )  # fmt: skip

    finished_run(4)
    assert selectors.task_type_run_seconds("image_creation") == 4.0
    finished_run(8)
    finished_run(8)
    with django_assert_num_queries(0):
        assert selectors.task_type_run_seconds("image_creation") == 4.0
    monkeypatch.setattr(selectors, "_RUN_SECONDS_TTL", 0.0)
    assert selectors.task_type_run_seconds("image_creation") == 8.0


def test_a_submit_answers_with_the_queue_position_and_eta_a_read_gives(
    owner: User, client: APIClient, job_body: Callable[..., dict]
) -> None:
    """The submit counts its answer's figures before its INSERT; they must be what
    reading the job right after gives, in every priority case, with lanes and other
    queues' jobs about."""
    first = post(client, job_body()).json()
    queue_name = Task.objects.get(pk=first["task_id"]).queue_name
    now = timezone.now()
    for state in (TaskState.STARTED, TaskState.RECEIVED):  # two lanes
        Task.objects.create(owner=owner, task_type="image_creation", queue_name=queue_name, state=state)
    Task.objects.create(owner=owner, task_type="image_creation", queue_name="elsewhere", priority=9)
    Task.objects.create(
        owner=owner, task_type="image_creation", queue_name="done", state=TaskState.SUCCESS,
        started_at=now - timedelta(seconds=3), completed_at=now,
    )  # fmt: skip
    selectors.run_seconds_forget()
    answers = []
    for priority in (5, 9, 1, 5, 9, 0, 10):
        answer = post(client, job_body(priority=priority)).json()
        read = client.get(f"/api/v1/tasks/{answer['task_id']}").json()
        assert (answer["queue_position"], answer["eta_seconds"]) == (read["queue_position"], read["eta_seconds"])
        answers.append((answer["queue_position"], answer["eta_seconds"]))
    # Behind the first job (and the higher ones), ahead of the lower; 3 s a run, 2 lanes.
    assert answers == [(1, 3.0), (0, 3.0), (3, 6.0), (3, 6.0), (1, 3.0), (6, 12.0), (0, 3.0)]


def test_eta_is_null_without_history(client: APIClient, job_body: Callable[..., dict]) -> None:
    assert post(client, job_body()).json()["eta_seconds"] is None


def test_a_batch_and_a_listing_give_each_job_its_own_queue_position_and_eta(
    owner: User, client: APIClient, job_body: Callable[..., dict]
) -> None:
    now = timezone.now()
    done = Task.objects.create(
        owner=owner, task_type="image_creation", queue_name="done", state=TaskState.SUCCESS,
        started_at=now - timedelta(seconds=3), completed_at=now,
    )  # fmt: skip
    waiting = post(client, job_body()).json()["task_id"]
    urgent = job_body()
    urgent["priority"] = 9
    response = client.post("/api/v1/tasks/batch", {"tasks": [job_body(), urgent, job_body()]}, format="json")
    assert response.status_code == 200, response.content
    batch = [result["task"] for result in response.json()["results"]]
    # The urgent one passes every normal one; the others queue behind the first job.
    assert [job["queue_position"] for job in batch] == [2, 0, 3]
    assert [job["eta_seconds"] for job in batch] == [9.0, 3.0, 12.0]
    listed = {job["task_id"]: job["queue_position"] for job in client.get("/api/v1/tasks").json()["results"]}
    assert listed == {str(done.pk): None, waiting: 1, **{job["task_id"]: job["queue_position"] for job in batch}}
