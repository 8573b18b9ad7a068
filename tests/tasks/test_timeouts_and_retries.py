"""Queue deadlines, run time limits, automatic retries with backoff, operator requeue,
and the attempt history. Time is passed in (`now=`), never slept."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from dramatiq import Message
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name
from rest_framework.test import APIClient

from accounts.models import User
from backserv_site.errors import StateConflict
from tasks import policy, services
from tasks.models import Task, TaskState


def _task(owner: User, **fields: Any) -> Task:
    return services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "x"}, **fields)


def _running(task: Task, worker: str = "w1") -> Task:
    assert services.task_claim(task_id=task.pk, worker=worker)
    task = Task.objects.get(pk=task.pk)
    assert services.task_start(task=task)
    return Task.objects.get(pk=task.pk)


@pytest.fixture
def backoff(settings: Any) -> float:
    settings.BACKSERV = {**settings.BACKSERV, "RETRY_BACKOFF_SECONDS": 10.0, "RETRY_BACKOFF_MAX_SECONDS": 25.0}
    return 10.0


# Queue timeout ----------------------------------------------------------------------


def test_a_job_not_started_within_its_queue_timeout_times_out(owner: User) -> None:
    task = _task(owner, queue_timeout=5)
    start = task.submitted_at
    assert services.tasks_time_out_queued(now=start + timedelta(seconds=4)) == 0
    assert services.tasks_time_out_queued(now=start + timedelta(seconds=6)) == 1
    task.refresh_from_db()
    assert task.state == TaskState.TIMEOUT
    assert task.error_code == "QUEUE_TIMEOUT"
    assert "5 seconds" in task.error_message
    assert task.events.last().type == "timed_out"


def test_the_queue_timeout_defaults_per_task_type_from_settings(owner: User, settings: Any) -> None:
    settings.BACKSERV = {**settings.BACKSERV, "QUEUE_TIMEOUT_SECONDS": {"default": 600, "image_creation": 42}}
    task = _task(owner)
    assert task.queue_timeout_seconds == 42
    assert task.queue_deadline == task.queued_at + timedelta(seconds=42)


def test_a_claimed_job_is_not_timed_out_by_the_queue_sweep(owner: User) -> None:
    task = _running(_task(owner, queue_timeout=5))
    assert services.tasks_time_out_queued(now=timezone.now() + timedelta(hours=1)) == 0
    assert Task.objects.get(pk=task.pk).state == TaskState.STARTED


def test_claims_skip_jobs_past_their_queue_deadline(owner: User) -> None:
    task = _task(owner, queue_timeout=5)
    # Six seconds on, before the sweep has timed it out.
    Task.objects.filter(pk=task.pk).update(queue_deadline=timezone.now() - timedelta(seconds=1))
    assert services.tasks_claim_and_start(queue_name=task.queue_name, worker="w", size=1) == []
    assert Task.objects.get(pk=task.pk).state == TaskState.PENDING


def test_it_refuses_a_queue_timeout_out_of_range(client: APIClient) -> None:
    body = {"task_type": "image_creation", "params": {"prompt": "x"}, "queue_timeout": 0}
    response = client.post("/api/v1/tasks", body, format="json")
    assert response.status_code == 400
    assert "queue_timeout" in response.json()["fields"]


# Run time limit ---------------------------------------------------------------------


def test_a_running_job_over_its_limit_ends_timed_out(owner: User) -> None:
    task = _running(_task(owner))
    assert services.task_time_out_running(task=task, limit_seconds=600)
    task.refresh_from_db()
    assert (task.state, task.error_code) == (TaskState.TIMEOUT, "RUN_TIME_LIMIT")
    assert "600 seconds" in task.error_message


def test_the_worker_stops_a_job_past_its_run_time_limit_between_steps(worker: Any, submit: Any, settings: Any) -> None:
    # A limit far below one step's time: the first check after start finds it spent.
    settings.BACKSERV = {**settings.BACKSERV, "RUN_TIME_LIMIT_SECONDS": {"default": 0.001}}
    task = worker.wait_for(submit(steps=20)["task_id"])
    assert (task.state, task.error_code) == (TaskState.TIMEOUT, "RUN_TIME_LIMIT")
    assert task.result is None


# Automatic retries ------------------------------------------------------------------


def test_a_retryable_failure_goes_back_to_pending_after_an_exponential_backoff(owner: User, backoff: float) -> None:
    task = _task(owner)
    now = timezone.now()
    expected_ceilings = [backoff, backoff * 2]
    for attempt, ceiling in enumerate(expected_ceilings, start=1):
        running = _running(Task.objects.get(pk=task.pk), worker=f"w{attempt}")
        assert running.attempts == attempt
        assert services.task_fail(task=running, code="OUT_OF_MEMORY", message="CUDA out of memory", now=now)
        waiting = Task.objects.get(pk=task.pk)
        assert waiting.state == TaskState.PENDING
        delay = (waiting.run_after - now).total_seconds()
        # Jitter keeps between half and all of the exponential delay.
        assert ceiling * 0.5 <= delay <= ceiling
        assert waiting.queued_at == waiting.run_after
        assert waiting.error_code == ""
    last = _running(Task.objects.get(pk=task.pk), worker="w3")
    assert services.task_fail(task=last, code="OUT_OF_MEMORY", message="CUDA out of memory", now=now)
    task.refresh_from_db()
    assert (task.state, task.error_code, task.attempts) == (TaskState.FAILURE, "OUT_OF_MEMORY", 3)


def test_the_backoff_is_capped(backoff: float) -> None:
    assert all(12.5 <= policy.retry_delay_seconds(attempt) <= 25.0 for attempt in (3, 5, 12))


def test_a_job_in_backoff_is_claimed_only_once_the_backoff_ends(
    owner: User, backoff: float, broker: StubBroker, django_capture_on_commit_callbacks: Any
) -> None:
    task = _running(_task(owner))
    now = timezone.now()
    # On commit the job is routed again (to the same local queue) and its message sent.
    with django_capture_on_commit_callbacks(execute=True):
        services.task_fail(task=task, code="TRANSIENT_IO", message="disk hiccup", now=now)
    assert Task.objects.get(pk=task.pk).run_after > timezone.now()
    assert services.tasks_claim_and_start(queue_name=task.queue_name, worker="w2", size=1) == []
    # The backoff over (its end moved to a second ago rather than waited for):
    Task.objects.filter(pk=task.pk).update(run_after=timezone.now() - timedelta(seconds=1))
    [claimed] = services.tasks_claim_and_start(queue_name=task.queue_name, worker="w2", size=1)
    assert claimed.pk == task.pk and claimed.attempts == 2


def test_a_retry_is_sent_as_a_delayed_message(
    owner: User, backoff: float, broker: StubBroker, django_capture_on_commit_callbacks: Any
) -> None:
    task = _running(_task(owner))
    broker.flush_all()
    with django_capture_on_commit_callbacks(execute=True):
        services.task_fail(task=task, code="WORKER_LOST", message="gone")
    assert broker.queues[task.queue_name].qsize() == 0
    delayed = broker.queues[dq_name(task.queue_name)]
    assert delayed.qsize() == 1
    message = Message.decode(delayed.get_nowait())
    assert message.args == (str(task.pk),)
    run_after_ms = Task.objects.get(pk=task.pk).run_after.timestamp() * 1000
    # The message becomes due when the job becomes claimable (to the millisecond).
    assert abs(message.options["eta"] - run_after_ms) < 1000


@pytest.mark.parametrize("code", ["NO_FACE_FOUND", "invalid_params", "PIPELINE_ERROR"])
def test_a_failure_that_no_retry_can_fix_is_final_at_once(owner: User, code: str) -> None:
    task = _running(_task(owner))
    assert services.task_fail(task=task, code=code, message="no")
    task.refresh_from_db()
    assert (task.state, task.error_code, task.attempts) == (TaskState.FAILURE, code, 1)


def test_a_request_may_allow_a_single_attempt(owner: User) -> None:
    task = _running(_task(owner, max_attempts=1))
    services.task_fail(task=task, code="OUT_OF_MEMORY", message="oom")
    assert Task.objects.get(pk=task.pk).state == TaskState.FAILURE


def test_it_refuses_max_attempts_out_of_range(client: APIClient) -> None:
    body = {"task_type": "image_creation", "params": {"prompt": "x"}, "max_attempts": 11}
    response = client.post("/api/v1/tasks", body, format="json")
    assert response.status_code == 400
    assert "max_attempts" in response.json()["fields"]


def test_a_lost_worker_s_job_waits_out_a_backoff_before_it_is_claimed_again(owner: User, backoff: float) -> None:
    task = _running(_task(owner))
    now = timezone.now()
    Task.objects.filter(pk=task.pk).update(lease_expires_at=now - timedelta(seconds=1))
    assert services.tasks_requeue_expired(now=now) == 1
    task.refresh_from_db()
    assert task.state == TaskState.PENDING
    assert backoff * 0.5 <= (task.run_after - now).total_seconds() <= backoff


# Requeue by an operator -------------------------------------------------------------


def test_requeue_forces_a_stuck_job_back_to_pending_and_fences_off_its_worker(owner: User) -> None:
    stuck = _running(_task(owner))
    requeued = services.task_requeue(task=stuck)
    assert (requeued.state, requeued.worker, requeued.attempts) == (TaskState.PENDING, "", 1)
    assert requeued.run_after is None
    assert not services.task_succeed(task=stuck, result={})
    assert requeued.events.last().data["reason"] == "requeued by an operator"


def test_requeue_of_a_waiting_job_sends_its_message_again(owner: User) -> None:
    task = _task(owner)
    Task.objects.filter(pk=task.pk).update(dispatched_at=timezone.now() - timedelta(hours=1))
    requeued = services.task_requeue(task=task)
    assert requeued.state == TaskState.PENDING
    assert requeued.dispatched_at > timezone.now() - timedelta(minutes=1)


def test_requeue_of_a_finished_job_is_a_conflict(owner: User) -> None:
    task = _running(_task(owner))
    services.task_succeed(task=task, result={})
    with pytest.raises(StateConflict):
        services.task_requeue(task=task)


# Attempt history --------------------------------------------------------------------


def test_the_api_shows_every_attempt_with_its_worker_and_error(client: APIClient, owner: User, backoff: float) -> None:
    task = _task(owner)
    first = _running(task, worker="gpu-a:1")
    services.task_fail(task=first, code="OUT_OF_MEMORY", message="CUDA out of memory")
    Task.objects.filter(pk=task.pk).update(run_after=None)
    second = _running(Task.objects.get(pk=task.pk), worker="gpu-b:2")
    services.task_succeed(task=second, result={"outputs": []})
    body = client.get(f"/api/v1/tasks/{task.pk}").json()
    history = body["attempts_history"]
    assert [(a["attempt"], a["worker"], a["outcome"]) for a in history] == [
        (1, "gpu-a:1", "retry_scheduled"),
        (2, "gpu-b:2", "succeeded"),
    ]
    assert history[0]["error"] == {"code": "OUT_OF_MEMORY", "message": "CUDA out of memory"}
    assert history[1]["error"] is None
    assert all(a["claimed_at"] and a["started_at"] and a["ended_at"] for a in history)
    assert (body["attempts"], body["max_attempts"]) == (2, 3)


def test_another_user_cannot_read_a_job_s_attempts(other_client: APIClient, owner: User) -> None:
    task = _task(owner)
    assert other_client.get(f"/api/v1/tasks/{task.pk}").status_code == 404
