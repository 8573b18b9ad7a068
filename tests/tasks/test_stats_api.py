"""GET /api/v1/stats/tasks and /api/v1/stats/hourly: staff only, one UTC day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from tasks import services
from tasks.models import Task, TaskState

DAY = datetime(2026, 3, 14, tzinfo=UTC)


def _job(owner: User, *, state: TaskState, hour: int, run_seconds: float = 0, attempts: int = 1) -> Task:
    task = services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "x"})
    submitted = DAY + timedelta(hours=hour, minutes=5)
    fields = {"state": state, "submitted_at": submitted, "attempts": attempts}
    if state in (TaskState.SUCCESS, TaskState.FAILURE):
        fields.update(started_at=submitted, completed_at=submitted + timedelta(seconds=run_seconds))
    Task.objects.filter(pk=task.pk).update(**fields)
    return task


@pytest.fixture
def day_of_jobs(owner: User) -> None:
    _job(owner, state=TaskState.SUCCESS, hour=1, run_seconds=2)
    _job(owner, state=TaskState.SUCCESS, hour=1, run_seconds=4, attempts=2)
    _job(owner, state=TaskState.FAILURE, hour=3, run_seconds=1)
    _job(owner, state=TaskState.PENDING, hour=23)
    # The day before: not counted.
    Task.objects.filter(pk=_job(owner, state=TaskState.SUCCESS, hour=1).pk).update(
        submitted_at=DAY - timedelta(hours=2), completed_at=DAY - timedelta(hours=1)
    )


def test_task_stats_count_the_day_s_jobs_by_outcome(staff_client: APIClient, day_of_jobs: None) -> None:
    response = staff_client.get("/api/v1/stats/tasks", {"date": "2026-03-14"})
    assert response.status_code == 200
    body = response.json()
    assert body["date"] == "2026-03-14"
    assert (body["total_tasks"], body["pending_tasks"], body["successful_tasks"]) == (4, 1, 2)
    assert (body["failed_tasks"], body["retried_tasks"]) == (1, 1)
    assert body["average_processing_time_ms"] == 3000
    assert len(body["hourly_trend"]) == 24
    assert [hour["tasks"] for hour in body["hourly_trend"] if hour["tasks"]] == [2, 1, 1]


def test_hourly_stats_give_created_completed_failed_and_mean_time(staff_client: APIClient, day_of_jobs: None) -> None:
    body = staff_client.get("/api/v1/stats/hourly", {"date": "2026-03-14"}).json()
    hours = {hour["hour"]: hour for hour in body["hours"]}
    assert hours[1] == {"hour": 1, "created": 2, "completed": 2, "failed": 0, "average_time_ms": 3000}
    assert hours[3] == {"hour": 3, "created": 1, "completed": 0, "failed": 1, "average_time_ms": None}
    assert hours[23]["created"] == 1
    assert sum(hour["created"] for hour in body["hours"]) == 4


def test_a_day_without_jobs_has_zeroes(staff_client: APIClient) -> None:
    body = staff_client.get("/api/v1/stats/tasks", {"date": "2020-01-01"}).json()
    assert body["total_tasks"] == 0 and body["average_processing_time_ms"] is None


def test_no_date_means_today(staff_client: APIClient) -> None:
    assert staff_client.get("/api/v1/stats/hourly").status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/stats/tasks", "/api/v1/stats/hourly"])
def test_it_refuses_a_bad_date_naming_the_field(staff_client: APIClient, path: str) -> None:
    response = staff_client.get(path, {"date": "14/03/2026"})
    assert response.status_code == 400
    assert "date" in response.json()["fields"]


@pytest.mark.parametrize("path", ["/api/v1/stats/tasks", "/api/v1/stats/hourly"])
def test_stats_need_a_token(anonymous_client: APIClient, path: str) -> None:
    assert anonymous_client.get(path).status_code == 401
    anonymous_client.credentials(HTTP_AUTHORIZATION="Bearer bs_nope")
    assert anonymous_client.get(path).status_code == 401


@pytest.mark.parametrize("path", ["/api/v1/stats/tasks", "/api/v1/stats/hourly"])
def test_stats_are_for_staff_only(client: APIClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"
