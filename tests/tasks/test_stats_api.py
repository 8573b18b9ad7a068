"""GET /api/v1/stats/tasks, /api/v1/stats/hourly and /api/v1/stats/servers/{id}: staff
only, one UTC day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from servers.models import Server, ServerKind, ServerStatus, ServerStatusChange
from servers.services import server_heartbeat, server_liveness_set, server_register, servers_mark_silent_offline
from tasks import services
from tasks.models import Task, TaskState

DAY = datetime(2026, 3, 14, tzinfo=UTC)


def _job(
    owner: User,
    *,
    state: TaskState,
    hour: int,
    run_seconds: float = 0,
    attempts: int = 1,
    server: Server | None = None,
) -> Task:
    task = services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "x"})
    submitted = DAY + timedelta(hours=hour, minutes=5)
    fields = {"state": state, "submitted_at": submitted, "attempts": attempts, "server": server}
    if state in (TaskState.SUCCESS, TaskState.FAILURE, TaskState.TIMEOUT, TaskState.REVOKED):
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


@pytest.mark.parametrize("route", ["/api/v1/stats/tasks", "/api/v1/stats/hourly", "/api/v1/stats/servers/{id}"])
@pytest.mark.parametrize("value", ["", "14/03/2026"])
def test_it_refuses_an_empty_or_malformed_date_naming_it(staff_client: APIClient, route: str, value: str) -> None:
    server = server_register(name="gpu-a", capabilities=["image_creation"], predict_url="http://a.example/p").server

    response = staff_client.get(f"{route.format(id=server.pk)}?date={value}")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert list(response.json()["fields"]) == ["date"]


def _server(name: str, *, registered: datetime = DAY) -> Server:
    server = server_register(name=name, kind=ServerKind.WORKER, capabilities=["image_creation"]).server
    Server.objects.filter(pk=server.pk).update(registered_at=registered)
    ServerStatusChange.objects.filter(server=server).update(at=registered)
    server.refresh_from_db()
    return server


@pytest.fixture
def servers_day(owner: User) -> tuple[Server, Server]:
    busy, quiet = _server("gpu-busy"), _server("gpu-quiet")
    for run_seconds in (2, 4, 6):
        _job(owner, state=TaskState.SUCCESS, hour=2, run_seconds=run_seconds, server=busy)
    _job(owner, state=TaskState.TIMEOUT, hour=2, run_seconds=9, server=busy)
    _job(owner, state=TaskState.SUCCESS, hour=5, run_seconds=1, server=quiet)
    # A cancelled job says nothing of its server; one finished the day before is not this day's.
    _job(owner, state=TaskState.REVOKED, hour=5, server=quiet)
    Task.objects.filter(pk=_job(owner, state=TaskState.FAILURE, hour=1, server=quiet).pk).update(
        completed_at=DAY - timedelta(minutes=1)
    )
    return busy, quiet


def test_task_stats_name_the_servers_that_finished_the_day_s_jobs(
    staff_client: APIClient, servers_day: tuple[Server, Server]
) -> None:
    busy, quiet = servers_day
    body = staff_client.get("/api/v1/stats/tasks", {"date": "2026-03-14"}).json()
    assert body["server_count"] == 2
    assert body["top_servers"] == [
        {"server_id": str(busy.pk), "name": "gpu-busy", "tasks_processed": 4, "success_rate": 0.75},
        {"server_id": str(quiet.pk), "name": "gpu-quiet", "tasks_processed": 1, "success_rate": 1.0},
    ]


def test_server_stats_give_the_jobs_it_finished_that_day(
    staff_client: APIClient, servers_day: tuple[Server, Server]
) -> None:
    busy, _ = servers_day
    response = staff_client.get(f"/api/v1/stats/servers/{busy.pk}", {"date": "2026-03-14"})
    assert response.status_code == 200
    body = response.json()
    assert body["server_id"] == str(busy.pk) and body["name"] == "gpu-busy" and body["date"] == "2026-03-14"
    assert (body["tasks_processed"], body["success_count"], body["failure_count"]) == (4, 3, 1)
    assert body["success_rate"] == 0.75
    assert body["average_processing_time_ms"] == 4000
    assert body["uptime"] == 1.0


def test_a_server_s_day_without_jobs_has_no_rate(staff_client: APIClient, servers_day: tuple[Server, Server]) -> None:
    busy, _ = servers_day
    body = staff_client.get(f"/api/v1/stats/servers/{busy.pk}", {"date": "2026-03-15"}).json()
    assert (body["tasks_processed"], body["success_rate"], body["average_processing_time_ms"]) == (0, None, None)


def test_uptime_is_the_share_of_the_day_the_server_was_online(staff_client: APIClient, db: None) -> None:
    server = _server("gpu-flaky", registered=DAY + timedelta(hours=4))
    server_liveness_set(server_id=server.pk, status=ServerStatus.OFFLINE, now=DAY + timedelta(hours=10))
    server_liveness_set(server_id=server.pk, status=ServerStatus.ONLINE, now=DAY + timedelta(hours=13))
    server_liveness_set(server_id=server.pk, status=ServerStatus.DEGRADED, now=DAY + timedelta(hours=22))
    # Counted from registration (04:00): online 6 h + 9 h of 20 h.
    body = staff_client.get(f"/api/v1/stats/servers/{server.pk}", {"date": "2026-03-14"}).json()
    assert body["uptime"] == 0.75
    # The next day it stayed degraded; the day before it did not exist yet.
    assert staff_client.get(f"/api/v1/stats/servers/{server.pk}", {"date": "2026-03-15"}).json()["uptime"] == 0.0
    assert staff_client.get(f"/api/v1/stats/servers/{server.pk}", {"date": "2026-03-13"}).json()["uptime"] is None


def test_liveness_changes_are_logged_once_each(db: None) -> None:
    server = server_register(name="gpu-log", kind=ServerKind.WORKER, capabilities=["image_creation"]).server
    Server.objects.filter(pk=server.pk).update(last_heartbeat_at=DAY)
    assert servers_mark_silent_offline() == 1
    assert servers_mark_silent_offline() == 0
    server.refresh_from_db()
    server_heartbeat(server=server, status="healthy")
    server_heartbeat(server=server, status="healthy")
    statuses = list(server.status_changes.order_by("at", "pk").values_list("status", flat=True))
    assert statuses == ["online", "offline", "online"]


@pytest.mark.parametrize("server_id", ["6f1c1f3e-8d4e-4f57-9a43-2f7d0f6b2c11", "not-a-uuid"])
def test_server_stats_of_an_unknown_server_are_404(staff_client: APIClient, server_id: str) -> None:
    response = staff_client.get(f"/api/v1/stats/servers/{server_id}")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_server_stats_are_for_staff_only(client: APIClient, staff_client: APIClient, db: None) -> None:
    server = _server("gpu-private")
    assert client.get(f"/api/v1/stats/servers/{server.pk}").status_code == 403
    response = staff_client.get(f"/api/v1/stats/servers/{server.pk}", {"date": "yesterday"})
    assert response.status_code == 400 and "date" in response.json()["fields"]


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
