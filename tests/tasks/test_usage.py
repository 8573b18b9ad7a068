"""Usage: each finished job records its queue wait and its share of GPU time, and
GET /api/v1/usage sums a user's over a range of days."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from django.utils.html import escape
from rest_framework.test import APIClient

from accounts.models import User
from tasks import services
from tasks.models import Task, TaskState, UsageDay, UsageRolledDay
from tasks.services.sweeps import tasks_requeue_expired, tasks_time_out_queued
from tasks.usage import usage_fields
from tasks.usage_rollup import usage_day_roll_up

T0 = datetime(2026, 3, 14, 12, tzinfo=UTC)


# The figures a job records ----------------------------------------------------------------


def test_a_run_s_gpu_time_is_shared_by_the_jobs_of_its_batch() -> None:
    figures = usage_fields(
        queued_at=T0, started_at=T0 + timedelta(seconds=3), completed_at=T0 + timedelta(seconds=11), batch_size=4
    )
    assert figures == {"queue_seconds": 3.0, "gpu_seconds": 2.0}


def test_a_job_that_never_ran_waited_until_it_ended_and_used_no_gpu() -> None:
    figures = usage_fields(queued_at=T0, started_at=None, completed_at=T0 + timedelta(seconds=5))
    assert figures == {"queue_seconds": 5.0, "gpu_seconds": 0.0}
    # Cancelled during a retry's backoff: queued from the end of the backoff, so no wait.
    backoff = usage_fields(queued_at=T0 + timedelta(seconds=30), started_at=None, completed_at=T0)
    assert backoff["queue_seconds"] == 0.0
    assert usage_fields(queued_at=None, started_at=None, completed_at=T0)["queue_seconds"] is None


def _started(owner: User) -> Task:
    task = services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "x"})
    assert services.task_claim(task_id=task.pk, worker="w1")
    task = Task.objects.get(pk=task.pk)
    assert services.task_start(task=task)
    return task


def _ran_for(task: Task, seconds: float) -> Task:
    """The job as if it had started `seconds` ago (and waited 2 s before)."""
    started_at = timezone.now() - timedelta(seconds=seconds)
    Task.objects.filter(pk=task.pk).update(started_at=started_at, queued_at=started_at - timedelta(seconds=2))
    task.started_at, task.queued_at = started_at, started_at - timedelta(seconds=2)
    return task


def test_each_way_a_run_ends_records_its_usage(owner: User) -> None:
    outcomes: list[Callable[[Task], Any]] = [
        lambda task: services.tasks_succeed(finished=[(task, {}, None)], batch_size=2),
        lambda task: services.task_fail(task=task, code="PIPELINE_ERROR", message="boom", batch_size=2),
        lambda task: services.task_time_out_running(task=task, limit_seconds=1, batch_size=2),
        lambda task: services.task_revoke_running(task=task, batch_size=2),
    ]
    for end in outcomes:
        task = _ran_for(_started(owner), 10)
        end(task)
        task.refresh_from_db()
        assert task.completed_at is not None, task.state
        assert task.gpu_seconds == pytest.approx(5.0, abs=0.5), task.state
        assert task.queue_seconds == pytest.approx(2.0, abs=1e-6), task.state


def test_a_cancelled_or_timed_out_waiting_job_records_its_wait_and_no_gpu(owner: User) -> None:
    cancelled = services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "x"})
    Task.objects.filter(pk=cancelled.pk).update(queued_at=timezone.now() - timedelta(seconds=4))
    services.task_cancel(task=Task.objects.get(pk=cancelled.pk))
    cancelled.refresh_from_db()
    assert (cancelled.state, cancelled.gpu_seconds) == (TaskState.REVOKED, 0.0)
    assert cancelled.queue_seconds == pytest.approx(4.0, abs=0.5)

    late = services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "x"})
    Task.objects.filter(pk=late.pk).update(
        queued_at=timezone.now() - timedelta(seconds=700), queue_deadline=timezone.now() - timedelta(seconds=100)
    )
    assert tasks_time_out_queued() == 1
    late.refresh_from_db()
    assert (late.state, late.gpu_seconds) == (TaskState.TIMEOUT, 0.0)
    assert late.queue_seconds == pytest.approx(700.0, abs=1)


def test_a_run_lost_with_its_worker_is_not_charged_and_a_retry_starts_afresh(owner: User) -> None:
    task = _ran_for(_started(owner), 30)
    Task.objects.filter(pk=task.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1), attempts=3, max_attempts=3
    )
    assert tasks_requeue_expired() == 1
    task.refresh_from_db()
    assert (task.state, task.gpu_seconds) == (TaskState.FAILURE, 0.0)
    assert task.queue_seconds == pytest.approx(2.0, abs=1e-6)

    services.task_retry(task=task)
    task.refresh_from_db()
    assert (task.state, task.gpu_seconds, task.queue_seconds) == (TaskState.PENDING, None, None)


# GET /api/v1/usage ----------------------------------------------------------------------

DAY = date(2026, 3, 14)


def _ended(owner: User, *, task_type: str, state: TaskState, day: date, gpu: float | None) -> Task:
    task = Task.objects.create(owner=owner, task_type=task_type, queue_name="gpu")
    ended = datetime(day.year, day.month, day.day, 10, tzinfo=UTC)
    Task.objects.filter(pk=task.pk).update(state=state, completed_at=ended, gpu_seconds=gpu)
    return task


@pytest.fixture
def jobs(owner: User, other_user: User) -> None:
    _ended(owner, task_type="image_creation", state=TaskState.SUCCESS, day=DAY, gpu=1.5)
    _ended(owner, task_type="image_creation", state=TaskState.SUCCESS, day=DAY, gpu=2.25)
    _ended(owner, task_type="image_creation", state=TaskState.TIMEOUT, day=DAY, gpu=0.0)
    _ended(owner, task_type="video_creation", state=TaskState.FAILURE, day=DAY + timedelta(days=2), gpu=4.0)
    _ended(owner, task_type="video_creation", state=TaskState.REVOKED, day=DAY + timedelta(days=2), gpu=1.0)
    # Finished before these fields existed: counted, with no GPU seconds.
    _ended(owner, task_type="image_creation", state=TaskState.SUCCESS, day=DAY + timedelta(days=2), gpu=None)
    # Outside the range, another user's, unfinished: not counted.
    _ended(owner, task_type="image_creation", state=TaskState.SUCCESS, day=DAY - timedelta(days=1), gpu=100.0)
    _ended(owner, task_type="image_creation", state=TaskState.SUCCESS, day=DAY + timedelta(days=3), gpu=100.0)
    _ended(other_user, task_type="image_creation", state=TaskState.SUCCESS, day=DAY, gpu=100.0)
    Task.objects.create(owner=owner, task_type="image_creation", queue_name="gpu")


RANGE = {"from": "2026-03-14", "to": "2026-03-16"}


def test_usage_sums_the_caller_s_jobs_in_all_by_type_and_by_day(client: APIClient, jobs: None) -> None:
    response = client.get("/api/v1/usage", RANGE)
    assert response.status_code == 200
    body = response.json()
    assert (body["user"], body["from"], body["to"]) == ("alice", "2026-03-14", "2026-03-16")
    assert (body["jobs"], body["succeeded"], body["failed"], body["gpu_seconds"]) == (6, 3, 2, 8.75)
    assert body["by_task_type"] == [
        {"task_type": "image_creation", "jobs": 4, "succeeded": 3, "failed": 1, "gpu_seconds": 3.75},
        {"task_type": "video_creation", "jobs": 2, "succeeded": 0, "failed": 1, "gpu_seconds": 5.0},
    ]
    assert body["by_day"] == [
        {"date": "2026-03-14", "jobs": 3, "succeeded": 2, "failed": 1, "gpu_seconds": 3.75},
        {"date": "2026-03-15", "jobs": 0, "succeeded": 0, "failed": 0, "gpu_seconds": 0.0},
        {"date": "2026-03-16", "jobs": 3, "succeeded": 1, "failed": 1, "gpu_seconds": 5.0},
    ]


def test_without_dates_it_is_the_last_thirty_days(client: APIClient) -> None:
    body = client.get("/api/v1/usage").json()
    assert body["to"] == timezone.localdate().isoformat()
    assert len(body["by_day"]) == 30 and body["jobs"] == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "2026-02-30"}, "from"),
        ({"from": ""}, "from"),
        ({"to": "14/03/2026"}, "to"),
        ({"from": "2026-03-16", "to": "2026-03-14"}, "from"),
        ({"from": "2025-01-01", "to": "2026-03-14"}, "from"),
        ({"from": "9999-12-30", "to": "9999-12-31"}, "to"),
        ({"user": ""}, "user"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(client: APIClient, query: dict[str, str], field: str) -> None:
    response = client.get("/api/v1/usage", query)
    assert response.status_code == 400, response.content
    assert list(response.json()["fields"]) == [field]


def test_a_user_may_name_themselves_but_another_user_is_a_404(client: APIClient, jobs: None) -> None:
    assert client.get("/api/v1/usage", {**RANGE, "user": "alice"}).json()["jobs"] == 6
    others = client.get("/api/v1/usage", {**RANGE, "user": "mallory"})
    nobody = client.get("/api/v1/usage", {**RANGE, "user": "nobody"})
    assert others.status_code == nobody.status_code == 404
    # The same answer for a user that exists and one that does not: nothing to tell apart.
    assert others.json()["code"] == nobody.json()["code"] == "not_found"


def test_another_user_sees_only_their_own_usage(other_client: APIClient, jobs: None) -> None:
    body = other_client.get("/api/v1/usage", RANGE).json()
    assert (body["user"], body["jobs"], body["gpu_seconds"]) == ("mallory", 1, 100.0)


def test_staff_with_the_admin_scope_may_ask_for_any_user(
    staff_client: APIClient, staff: User, client_with_scopes: Callable[..., APIClient], jobs: None
) -> None:
    body = staff_client.get("/api/v1/usage", {**RANGE, "user": "alice"}).json()
    assert (body["user"], body["jobs"], body["gpu_seconds"]) == ("alice", 6, 8.75)
    assert staff_client.get("/api/v1/usage", {**RANGE, "user": "nobody"}).status_code == 404
    # Staff without the admin scope in the token are any user here.
    reader = client_with_scopes(staff, "read")
    assert reader.get("/api/v1/usage", {**RANGE, "user": "alice"}).status_code == 404


def test_usage_needs_a_token(anonymous_client: APIClient) -> None:
    assert anonymous_client.get("/api/v1/usage").status_code == 401


# Days rolled up by the sweep -----------------------------------------------------------------


def _roll_up_all(now: datetime) -> list[date]:
    while usage_day_roll_up(now=now):
        pass
    return sorted(UsageRolledDay.objects.values_list("day", flat=True))


def test_rolled_up_days_answer_as_the_jobs_did_and_outlive_them(client: APIClient, staff: User, jobs: None) -> None:
    console = Client()
    console.force_login(staff)
    before = client.get("/api/v1/usage", RANGE).json()
    ranking = console.get("/admin/tasks/task/usage/", RANGE).context["rows"]

    # Days with jobs only; the empty day between is passed over, not lost.
    assert _roll_up_all(now=datetime(2026, 3, 20, tzinfo=UTC)) == [
        date(2026, 3, 13),
        date(2026, 3, 14),
        date(2026, 3, 16),
        date(2026, 3, 17),
    ]
    assert UsageDay.objects.filter(day=DAY).count() == 2  # alice's and mallory's image_creation
    assert client.get("/api/v1/usage", RANGE).json() == before
    Task.objects.all().delete()  # TASK_RETENTION_DAYS, say
    assert client.get("/api/v1/usage", RANGE).json() == before
    assert console.get("/admin/tasks/task/usage/", RANGE).context["rows"] == ranking


def test_a_range_reads_rolled_up_days_and_the_jobs_of_the_days_after(
    client: APIClient, owner: User, jobs: None
) -> None:
    assert _roll_up_all(now=datetime(2026, 3, 15, 2, tzinfo=UTC))[-1] == DAY
    # Ended on the day after the last one rolled up: read from the jobs.
    _ended(owner, task_type="face_swap", state=TaskState.SUCCESS, day=DAY + timedelta(days=1), gpu=0.5)
    body = client.get("/api/v1/usage", RANGE).json()
    assert (body["jobs"], body["gpu_seconds"]) == (7, 9.25)
    assert [day["jobs"] for day in body["by_day"]] == [3, 1, 3]


def test_a_day_is_rolled_up_only_once_it_has_been_over_an_hour(owner: User) -> None:
    _ended(owner, task_type="image_creation", state=TaskState.SUCCESS, day=DAY, gpu=1.0)
    end_of_day = datetime(2026, 3, 15, tzinfo=UTC)
    assert usage_day_roll_up(now=end_of_day + timedelta(minutes=59)) == 0
    assert usage_day_roll_up(now=end_of_day + timedelta(minutes=61)) == 1
    assert usage_day_roll_up(now=end_of_day + timedelta(days=30)) == 0


# The admin's usage page -------------------------------------------------------------------


def test_the_admin_lists_users_by_gpu_seconds_in_a_range(staff: User, jobs: None) -> None:
    console = Client()
    console.force_login(staff)
    response = console.get("/admin/tasks/task/usage/", RANGE)
    assert response.status_code == 200
    assert [(row["username"], row["gpu_seconds"], row["jobs"]) for row in response.context["rows"]] == [
        ("mallory", 100.0, 1),
        ("alice", 8.75, 6),
    ]
    # Each row links to the jobs it counts.
    alice = next(row for row in response.context["rows"] if row["username"] == "alice")
    assert f'href="/admin/tasks/task/?{escape(alice["jobs_query"])}"' in response.content.decode()
    assert console.get(f"/admin/tasks/task/?{alice['jobs_query']}").context["cl"].result_count == 6


def test_the_admin_page_shows_a_bad_date_and_keeps_the_default_range(staff: User) -> None:
    console = Client()
    console.force_login(staff)
    response = console.get("/admin/tasks/task/usage/", {"from": "not-a-date"})
    assert response.status_code == 200
    assert "from" in response.context["form"].errors
    assert response.context["last_day"] == timezone.localdate()


def test_the_admin_page_is_staff_only(owner: User) -> None:
    console = Client()
    console.force_login(owner)
    assert console.get("/admin/tasks/task/usage/").status_code == 302
