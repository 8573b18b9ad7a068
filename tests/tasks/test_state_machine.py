"""The job state machine: conditional UPDATEs let exactly one of racing writers win,
and every change leaves an event."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from backserv_site.errors import StateConflict
from tasks import services
from tasks.models import Task, TaskEvent, TaskState
from tasks.selectors import task_attempts_history
from tasks.services import running


def _task(owner: User, params_size: int | None = None, **fields: object) -> Task:
    """A waiting job; `params_size` gives it that width and height (its batch key)."""
    params: dict[str, object] = {"prompt": "x"}
    if params_size is not None:
        params.update(width=params_size, height=params_size)
    return services.task_submit(owner=owner, task_type="image_creation", params=params, **fields)  # type: ignore[arg-type]


def _claimed(owner: User, worker: str = "w1") -> Task:
    task = _task(owner)
    assert services.task_claim(task_id=task.pk, worker=worker)
    return Task.objects.get(pk=task.pk)


def _race(count: int, action: object) -> list[object]:
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = action(index)  # type: ignore[operator]
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.django_db(transaction=True)
def test_exactly_one_of_racing_claims_wins(owner: User) -> None:
    for _ in range(10):
        task = _task(owner)
        results = _race(6, lambda index, task=task: services.task_claim(task_id=task.pk, worker=f"w{index}"))
        assert results.count(True) == 1
        task.refresh_from_db()
        assert task.state == TaskState.RECEIVED
        assert task.attempts == 1
        assert task.worker == f"w{results.index(True)}"
        assert task.events.filter(type=TaskEvent.Type.CLAIMED).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_cancel_racing_a_claim_leaves_one_consistent_outcome(owner: User) -> None:
    for _ in range(10):
        task = _task(owner)

        def act(index: int, task: Task = task) -> object:
            if index == 0:
                return services.task_claim(task_id=task.pk, worker="w")
            return services.task_cancel(task=Task.objects.get(pk=task.pk)).state

        claimed, _ = _race(2, act)
        task.refresh_from_db()
        if claimed:
            assert task.state == TaskState.RECEIVED and task.cancel_requested
        else:
            assert task.state == TaskState.REVOKED


def test_submit_records_a_pending_job_and_an_event(owner: User) -> None:
    task = _task(owner, priority=9, user_label="end-user-1")
    assert task.state == TaskState.PENDING
    assert task.priority == 9
    assert list(task.events.values_list("type", flat=True)) == ["submitted"]


def test_the_worker_path_records_each_change(owner: User) -> None:
    task = _claimed(owner)
    assert services.task_start(task=task)
    assert services.task_progress_report(task=task, progress=0.5, step=2, total=4)
    assert services.task_succeed(task=task, result={"outputs": []})
    task.refresh_from_db()
    assert task.state == TaskState.SUCCESS and task.progress == 1.0 and task.completed_at
    assert list(task.events.values_list("type", flat=True)) == [
        "submitted", "claimed", "started", "progress", "succeeded",
    ]  # fmt: skip


def test_a_start_refuses_a_job_cancelled_since_its_claim_or_claimed_again_since(owner: User) -> None:
    cancelled, taken_over, held = (_claimed(owner, worker="w1") for _ in range(3))
    services.task_cancel(task=cancelled)
    # Another claim of this job (its lease reaped): this worker no longer holds it.
    Task.objects.filter(pk=taken_over.pk).update(attempts=2)
    assert not services.task_start(task=cancelled)
    assert not services.task_start(task=taken_over)
    assert services.task_start(task=held)
    states = dict(Task.objects.values_list("pk", "state"))
    assert [states[task.pk] for task in (cancelled, taken_over, held)] == [
        TaskState.RECEIVED, TaskState.RECEIVED, TaskState.STARTED,
    ]  # fmt: skip
    event = TaskEvent.objects.get(type="started")
    assert event.task_id == held.pk and event.data == {"worker": "w1", "attempt": 1}
    # The worker's copy is brought up to date; the others' are left as they were.
    assert held.state == TaskState.STARTED and held.started_at is not None
    assert cancelled.state == TaskState.RECEIVED and cancelled.started_at is None


def _started_batch(owner: User, size: int) -> list[Task]:
    jobs = [_task(owner) for _ in range(size)]
    batch = services.tasks_claim_and_start(queue_name=jobs[0].queue_name, worker="w1", size=size)
    assert [task.pk for task in batch] == [task.pk for task in jobs]
    return batch


def test_a_batch_succeeds_in_one_update_each_job_with_its_own_result(owner: User) -> None:
    batch = _started_batch(owner, 3)
    finished = [(task, {"outputs": [], "seed": index}, (4, 4)) for index, task in enumerate(batch)]
    with CaptureQueriesContext(connection) as queries:
        assert services.tasks_succeed(finished=finished) == batch
    updates = [query["sql"] for query in queries.captured_queries if query["sql"].startswith("UPDATE")]
    assert len(updates) == 1
    rows = dict(Task.objects.filter(pk__in=[task.pk for task in batch]).values_list("pk", "result"))
    assert [rows[task.pk] for task in batch] == [{"outputs": [], "seed": index} for index in range(3)]
    assert set(Task.objects.filter(pk__in=rows).values_list("state", flat=True)) == {TaskState.SUCCESS}
    assert TaskEvent.objects.filter(type="succeeded").count() == 3


def test_a_batch_job_no_longer_held_keeps_its_row_as_it_is_and_the_others_succeed(owner: User) -> None:
    batch = _started_batch(owner, 3)
    # The second one's lease was reaped and it was claimed again: this worker lost it.
    Task.objects.filter(pk=batch[1].pk).update(state=TaskState.RECEIVED, attempts=2, worker="w2")
    finished = [(task, {"outputs": [], "seed": index}, None) for index, task in enumerate(batch)]
    assert services.tasks_succeed(finished=finished) == [batch[0], batch[2]]
    rows = {pk: (state, result) for pk, state, result in Task.objects.values_list("pk", "state", "result")}
    assert rows[batch[0].pk] == (TaskState.SUCCESS, {"outputs": [], "seed": 0})
    assert rows[batch[1].pk] == (TaskState.RECEIVED, None)
    assert rows[batch[2].pk] == (TaskState.SUCCESS, {"outputs": [], "seed": 2})
    succeeded = TaskEvent.objects.filter(type="succeeded").values_list("task_id", flat=True)
    assert set(succeeded) == {batch[0].pk, batch[2].pk}


def test_it_refuses_changes_the_state_machine_does_not_allow(owner: User) -> None:
    task = _task(owner)
    task.worker, task.attempts = "w1", 0
    assert not services.task_start(task=task)  # not claimed yet
    assert not services.task_succeed(task=task, result={})
    assert not services.task_fail(task=task, code="X", message="x")
    with pytest.raises(StateConflict):
        services.task_retry(task=task)
    assert Task.objects.get(pk=task.pk).state == TaskState.PENDING


def test_a_worker_whose_claim_was_taken_over_cannot_finish_the_job(owner: User) -> None:
    first = _claimed(owner, worker="w1")
    assert services.task_start(task=first)
    Task.objects.filter(pk=first.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert services.tasks_requeue_expired() == 1
    assert services.task_claim(task_id=first.pk, worker="w1")  # same process name, new attempt
    assert not services.task_succeed(task=first, result={})
    assert not services.task_progress_report(task=first, progress=0.3, step=1, total=3)
    second = Task.objects.get(pk=first.pk)
    assert second.attempts == 2 and second.state == TaskState.RECEIVED


def test_a_claim_handed_back_spends_no_attempt_and_leaves_the_attempt_history(owner: User) -> None:
    task = _claimed(owner, worker="remote:gpu")
    assert services.task_hand_back(task=task, reason="server gpu refused the connection")
    row = Task.objects.get(pk=task.pk)
    assert (row.state, row.attempts, row.worker, row.queue_name) == (TaskState.PENDING, 0, "", "")
    assert task_attempts_history(task=row) == []
    handed_back = TaskEvent.objects.get(task=task, type="handed_back")
    assert handed_back.data == {"worker": "remote:gpu", "attempt": 1, "reason": "server gpu refused the connection"}
    # Its next claim is attempt 1 again, and the only one in its history.
    assert services.task_claim(task_id=task.pk, worker="w2")
    row = Task.objects.get(pk=task.pk)
    assert row.attempts == 1
    assert [(run["attempt"], run["worker"]) for run in task_attempts_history(task=row)] == [(1, "w2")]
    # Only the claim it was given is handed back: not one taken since.
    assert not services.task_hand_back(task=task, reason="late")
    assert Task.objects.get(pk=task.pk).worker == "w2"


def test_a_claim_is_not_handed_back_once_started_or_cancelled(owner: User) -> None:
    started, cancelled = _claimed(owner), _claimed(owner)
    assert services.task_start(task=started)
    services.task_cancel(task=cancelled)
    for task in (started, cancelled):
        assert not services.task_hand_back(task=task, reason="refused")
        assert Task.objects.get(pk=task.pk).attempts == 1
    assert not TaskEvent.objects.filter(type="handed_back").exists()


def test_expired_leases_requeue_until_attempts_are_spent(owner: User, settings: object) -> None:
    settings.BACKSERV = {**settings.BACKSERV, "MAX_ATTEMPTS": 2}  # type: ignore[attr-defined]
    task = _task(owner)
    for attempt in (1, 2):
        assert services.task_claim(task_id=task.pk, worker=f"w{attempt}")
        Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        assert services.tasks_requeue_expired() == 1
    task.refresh_from_db()
    assert task.state == TaskState.FAILURE
    assert task.error_code == "WORKER_LOST"
    assert [e.type for e in task.events.all()].count("requeued") == 1


def test_a_live_lease_is_left_alone(owner: User) -> None:
    task = _claimed(owner)
    assert services.tasks_requeue_expired() == 0
    assert Task.objects.get(pk=task.pk).state == TaskState.RECEIVED


def test_an_expired_job_whose_cancel_was_requested_ends_revoked(owner: User) -> None:
    task = _claimed(owner)
    services.task_cancel(task=task)
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    services.tasks_requeue_expired()
    assert Task.objects.get(pk=task.pk).state == TaskState.REVOKED


@pytest.mark.django_db(transaction=True)
def test_concurrent_sweeps_requeue_a_job_once(owner: User) -> None:
    task = _claimed(owner)
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    results = _race(4, lambda index: services.tasks_requeue_expired())
    assert sum(results) == 1  # type: ignore[arg-type]
    assert Task.objects.get(pk=task.pk).events.filter(type="requeued").count() == 1


def test_claims_take_the_highest_priority_then_the_oldest(owner: User) -> None:
    low = _task(owner, priority=1)
    high_old = _task(owner, priority=9)
    high_new = _task(owner, priority=9)
    queue = low.queue_name
    order = [services.tasks_claim_and_start(queue_name=queue, worker="w", size=1)[0].pk for _ in range(3)]
    assert order == [high_old.pk, high_new.pk, low.pk]
    assert services.tasks_claim_and_start(queue_name=queue, worker="w", size=1) == []


def test_cancel_of_a_finished_job_is_a_conflict(owner: User) -> None:
    task = _task(owner)
    services.task_cancel(task=task)
    with pytest.raises(StateConflict):
        services.task_cancel(task=Task.objects.get(pk=task.pk))


def test_retry_puts_a_revoked_job_back_with_a_clean_slate(owner: User) -> None:
    task = _claimed(owner)
    services.task_fail(task=task, code="PIPELINE_ERROR", message="boom")
    retried = services.task_retry(task=Task.objects.get(pk=task.pk))
    assert retried.state == TaskState.PENDING
    assert (retried.error_code, retried.attempts, retried.result, retried.progress) == ("", 0, None, 0.0)
    assert retried.events.last().type == "retried"


def test_stale_messages_are_sent_again_once_when_nothing_is_being_claimed(owner: User) -> None:
    task = _task(owner)
    long_ago = timezone.now() - timedelta(hours=1)
    Task.objects.filter(pk=task.pk).update(dispatched_at=long_ago)
    assert services.tasks_redispatch_stale() == 1
    assert services.tasks_redispatch_stale() == 0


def test_stale_messages_are_not_resent_while_workers_keep_claiming(owner: User) -> None:
    waiting = _task(owner)
    Task.objects.filter(pk=waiting.pk).update(dispatched_at=timezone.now() - timedelta(hours=1))
    _claimed(owner)  # a claim just now: messages are flowing
    assert services.tasks_redispatch_stale() == 0


def test_recovery_after_a_restart_requeues_jobs_left_running(owner: User) -> None:
    running = _claimed(owner)
    services.task_start(task=running)
    waiting = _task(owner)
    assert services.tasks_recover_after_restart() == 1
    assert Task.objects.get(pk=running.pk).state == TaskState.PENDING
    assert Task.objects.get(pk=waiting.pk).state == TaskState.PENDING


def test_delete_refuses_a_running_job(owner: User) -> None:
    task = _claimed(owner)
    with pytest.raises(StateConflict):
        services.task_delete(task=task)
    assert Task.objects.filter(pk=task.pk).exists()


def _statements(queries: CaptureQueriesContext, start: str) -> list[str]:
    return [query["sql"] for query in queries.captured_queries if query["sql"].startswith(start)]


def test_a_batch_from_a_short_queue_is_claimed_from_one_read_in_two_updates(owner: User) -> None:
    small = [_task(owner, priority=9, params_size=64) for _ in range(2)]
    other = _task(owner, priority=5, params_size=128)
    last = _task(owner, priority=1, params_size=64)
    with CaptureQueriesContext(connection) as queries:
        batch = services.tasks_claim_and_start(queue_name=other.queue_name, worker="w", size=4)
    # The leader and every waiting job of its batch key, best first; the other size waits.
    assert [task.pk for task in batch] == [small[0].pk, small[1].pk, last.pk]
    queue_reads = [sql for sql in _statements(queries, "SELECT") if "LIMIT" in sql]
    assert len(queue_reads) == 1, queue_reads
    # The leader's claim, then its two companions' in one.
    assert len(_statements(queries, "UPDATE")) == 2, _statements(queries, "UPDATE")
    rows = Task.objects.filter(pk__in=[task.pk for task in batch])
    assert {(row.state, row.worker, row.attempts) for row in rows} == {(TaskState.STARTED, "w", 1)}
    assert [(task.state, task.worker, task.attempts) for task in batch] == [(TaskState.STARTED, "w", 1)] * 3
    assert TaskEvent.objects.filter(task__in=batch, type="claimed").count() == 3
    assert Task.objects.get(pk=other.pk).state == TaskState.PENDING


def test_a_companion_taken_since_it_was_read_is_left_out_of_the_batch(
    owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = [_task(owner, params_size=64) for _ in range(3)]
    best_claimable = running._best_claimable

    def read_then_another_worker_claims(**kwargs: object) -> list[Task]:
        seen = best_claimable(**kwargs)  # type: ignore[arg-type]
        # Another worker claims the second job between this worker's read and its UPDATE.
        assert services.task_claim(task_id=read[1].pk, worker="other")
        return seen

    monkeypatch.setattr(running, "_best_claimable", read_then_another_worker_claims)
    batch = services.tasks_claim_and_start(queue_name=read[0].queue_name, worker="w", size=3)
    assert [task.pk for task in batch] == [read[0].pk, read[2].pk]
    assert Task.objects.get(pk=read[1].pk).worker == "other"
    assert TaskEvent.objects.filter(task=read[1], type="claimed").count() == 1
    assert not TaskEvent.objects.filter(task=read[1], type="started").exists()
    started = TaskEvent.objects.filter(type="started").order_by("id")
    assert [event.data["batch_size"] for event in started] == [2, 2]


def test_companions_behind_the_first_candidates_are_found_by_a_second_read(owner: User) -> None:
    leader = _task(owner, priority=9, params_size=64)
    ahead = [_task(owner, priority=8, params_size=128) for _ in range(8)]
    behind = _task(owner, priority=1, params_size=64)
    batch = services.tasks_claim_and_start(queue_name=leader.queue_name, worker="w", size=4)
    assert [task.pk for task in batch] == [leader.pk, behind.pk]
    assert all(Task.objects.get(pk=task.pk).state == TaskState.PENDING for task in ahead)


def test_a_full_read_holding_a_whole_batch_is_the_only_read(owner: User) -> None:
    """A burst: the queue is deeper than the read, which already holds the leader's
    best companions (any job beyond it ranks behind them)."""
    jobs = [_task(owner, priority=5, params_size=64) for _ in range(12)]
    with CaptureQueriesContext(connection) as queries:
        batch = services.tasks_claim_and_start(queue_name=jobs[0].queue_name, worker="w", size=4)
    assert [task.pk for task in batch] == [task.pk for task in jobs[:4]]
    queue_reads = [sql for sql in _statements(queries, "SELECT") if "LIMIT" in sql]
    assert len(queue_reads) == 1, queue_reads
    assert all(Task.objects.get(pk=task.pk).state == TaskState.PENDING for task in jobs[4:])


def test_a_batch_of_one_claims_the_best_job_alone(owner: User) -> None:
    first, second = _task(owner, priority=9, params_size=64), _task(owner, priority=9, params_size=64)
    assert [task.pk for task in services.tasks_claim_and_start(queue_name=first.queue_name, worker="w", size=1)] == [
        first.pk
    ]
    assert Task.objects.get(pk=second.pk).state == TaskState.PENDING
    started = TaskEvent.objects.get(type="started")
    assert started.data == {"worker": "w", "attempt": 1}


@pytest.mark.django_db(transaction=True)
def test_a_worker_claims_and_starts_a_batch_in_one_transaction(owner: User) -> None:
    jobs = [_task(owner, priority=5, params_size=64) for _ in range(3)]
    with CaptureQueriesContext(connection) as queries:
        started = services.tasks_claim_and_start(queue_name=jobs[0].queue_name, worker="w", size=4)
    assert [task.pk for task in started] == [task.pk for task in jobs]
    assert [(task.state, task.worker, task.attempts) for task in started] == [(TaskState.STARTED, "w", 1)] * 3
    rows = Task.objects.filter(pk__in=[task.pk for task in jobs])
    assert {(row.state, row.worker, row.attempts) for row in rows} == {(TaskState.STARTED, "w", 1)}
    assert all(row.started_at is not None and row.claimed_at is not None for row in rows)
    # The log reads as it did with two commits: claimed, then started.
    for task in jobs:
        events = list(TaskEvent.objects.filter(task=task).order_by("id").values_list("type", "data"))
        assert events == [
            ("submitted", events[0][1]),
            ("claimed", {"worker": "w"}),
            ("started", {"worker": "w", "attempt": 1, "batch_size": 3}),
        ]
    statements = [query["sql"] for query in queries.captured_queries]
    assert statements.count("COMMIT") == 1
    assert not [sql for sql in statements if "SAVEPOINT" in sql]
    # Claimed and started at once: the leader's UPDATE, the companions', one INSERT
    # of all six events.
    assert len([sql for sql in statements if sql.startswith("UPDATE")]) == 2
    assert len([sql for sql in statements if sql.startswith("INSERT")]) == 1


def test_a_batch_s_jobs_each_start_on_their_own_next_attempt(owner: User) -> None:
    jobs = [_task(owner, params_size=64) for _ in range(3)]
    # The last one ran once before (its worker was lost): this is its second attempt.
    Task.objects.filter(pk=jobs[2].pk).update(attempts=1)
    with CaptureQueriesContext(connection) as queries:
        batch = services.tasks_claim_and_start(queue_name=jobs[0].queue_name, worker="w", size=3)
    expected = [(jobs[0].pk, 1), (jobs[1].pk, 1), (jobs[2].pk, 2)]
    assert [(task.pk, task.attempts) for task in batch] == expected
    assert sorted(Task.objects.values_list("pk", "attempts")) == sorted(expected)
    started = dict(TaskEvent.objects.filter(type="started").values_list("task_id", "data"))
    assert [started[task.pk]["attempt"] for task in batch] == [1, 1, 2]
    # The leader's UPDATE, then one for both companions, each set its own attempt.
    assert len(_statements(queries, "UPDATE")) == 2


@pytest.mark.django_db(transaction=True)
def test_a_take_that_fails_after_its_update_leaves_the_job_waiting(
    owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No job is left claimed and not started, holding a lease nobody renews, nor
    started with no events logged."""
    task = _task(owner)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr("tasks.services.core.record_events", broken)
    with pytest.raises(RuntimeError):
        services.tasks_claim_and_start(queue_name=task.queue_name, worker="w", size=1)
    row = Task.objects.get(pk=task.pk)
    assert (row.state, row.worker, row.attempts) == (TaskState.PENDING, "", 0)
    assert not TaskEvent.objects.filter(task=task, type="claimed").exists()


def test_claim_and_start_finds_nothing_in_an_empty_queue(owner: User) -> None:
    task = _task(owner)
    assert services.tasks_claim_and_start(queue_name=task.queue_name + "-other", worker="w", size=4) == []
    assert Task.objects.get(pk=task.pk).state == TaskState.PENDING
