"""Database queries per job lifecycle: a budget that catches a new query per step or
per event creeping into the hot path. Counted on the thread that does the work: the
API request, then the worker's handling of the job's message (run here in the test's
thread, with progress written at every step as in the tests' settings)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from generation.runner import execute_message
from tasks import services
from tasks.models import Task, TaskState

# Counted on SQLite, where a transaction's BEGIN and COMMIT are statements too. A
# submit: the token; then BEGIN, whether any server is registered, the job's and its
# event's INSERTs, the owner's lock, one query that checks the quota and counts the
# answer's queue position and lanes, COMMIT. The answer reads nothing back. The first request also
# records the token's use, and reads the type's recent run times for the ETA (kept for
# a while per process).
SUBMIT_BUDGET = 10
# The message's look at its job; the read that picks the job (and its batch
# companions); its claim and start in one transaction (BEGIN, one UPDATE to STARTED,
# one INSERT of both events, COMMIT); the cancel check as the model is taken; the
# success in another transaction (BEGIN, UPDATE, INSERT, COMMIT); whether a job waits
# for a server; the next claim's read, which finds the queue empty and opens no
# transaction. That is 13, less the progress write the last step does not make (it
# goes with the success): 9 + 5 per step, 14 for a run of one step.
WORKER_FIXED_BUDGET = 9
# The cancel check's read, and when progress is due (every step here) a transaction
# with an UPDATE and an event INSERT.
WORKER_PER_STEP_BUDGET = 5
# A status poll, the API's most frequent call: the token, then the job with its queue
# position, its queue's lanes and whether it has attempts, in one query. A job that
# was claimed reads its attempts from the event log as well.
STATUS_BUDGET = 2


def test_a_job_s_lifecycle_stays_within_its_query_budget(
    transactional_db: None, client: APIClient, demo_models: Any, settings: Any
) -> None:
    steps = 4
    body = {"task_type": "image_creation", "params": {"prompt": "fox", "width": 64, "height": 64, "steps": steps}}
    with CaptureQueriesContext(connection) as submit:
        response = client.post("/api/v1/tasks", body, format="json")
    assert response.status_code == 202
    task_id = response.json()["task_id"]
    task = Task.objects.get(pk=task_id)
    with CaptureQueriesContext(connection) as run:
        execute_message(task_id, queue_name=task.queue_name)
    assert Task.objects.get(pk=task_id).state == TaskState.SUCCESS
    assert len(submit) <= SUBMIT_BUDGET, [query["sql"][:120] for query in submit.captured_queries]
    assert len(run) <= WORKER_FIXED_BUDGET + steps * WORKER_PER_STEP_BUDGET, [
        query["sql"][:120] for query in run.captured_queries
    ]


def test_the_cancel_check_reads_the_row_at_most_once_per_interval(
    transactional_db: None, client: APIClient, demo_models: Any, settings: Any
) -> None:
    def worker_queries(steps: int) -> list[str]:
        body = {"task_type": "image_creation", "params": {"prompt": "fox", "width": 64, "height": 64, "steps": steps}}
        task_id = client.post("/api/v1/tasks", body, format="json").json()["task_id"]
        with CaptureQueriesContext(connection) as run:
            execute_message(task_id, queue_name=Task.objects.get(pk=task_id).queue_name)
        assert Task.objects.get(pk=task_id).state == TaskState.SUCCESS
        return [query["sql"] for query in run.captured_queries if '"cancel_requested" FROM' in query["sql"]]

    settings.BACKSERV = {**settings.BACKSERV, "CANCEL_CHECK_INTERVAL_SECONDS": 0.0}
    # Once as the model is taken, then after every step.
    assert len(worker_queries(steps=6)) == 7
    settings.BACKSERV = {**settings.BACKSERV, "CANCEL_CHECK_INTERVAL_SECONDS": 60.0}
    # Only the read as the model is taken: no step comes a minute after it.
    assert len(worker_queries(steps=6)) == 1


def test_a_status_read_is_one_query_for_the_job(client: APIClient, owner: User) -> None:
    """Counted for a queued job (queue position and ETA shown) and for a claimed one
    (attempts shown), each read once before, so the process-cached run time is warm."""
    now = timezone.now()
    # A recent run of the type: the queued job's ETA is then shown, from its lanes.
    Task.objects.create(
        owner=owner, task_type="image_creation", queue_name="done", state=TaskState.SUCCESS,
        started_at=now - timedelta(seconds=3), completed_at=now,
    )  # fmt: skip
    params = {"prompt": "fox", "width": 64, "height": 64, "steps": 4}
    queued = services.task_submit(owner=owner, task_type="image_creation", params=params)
    claimed = services.task_submit(owner=owner, task_type="image_creation", params=params)
    assert services.task_claim(task_id=claimed.pk, worker="w")
    for task in (queued, claimed):
        client.get(f"/api/v1/tasks/{task.pk}")

    with CaptureQueriesContext(connection) as queued_read:
        job = client.get(f"/api/v1/tasks/{queued.pk}").json()
    with CaptureQueriesContext(connection) as claimed_read:
        running = client.get(f"/api/v1/tasks/{claimed.pk}").json()

    assert (job["queue_position"], job["eta_seconds"], job["attempts_history"]) == (0, 3.0, [])
    assert [attempt["outcome"] for attempt in running["attempts_history"]] == ["running"]
    assert len(queued_read) <= STATUS_BUDGET, [query["sql"][:120] for query in queued_read.captured_queries]
    assert len(claimed_read) <= STATUS_BUDGET + 1, [query["sql"][:120] for query in claimed_read.captured_queries]
