"""At most N unfinished (PENDING..STARTED) jobs per user: 429 QUOTA_EXCEEDED past it,
a per-user override from the admin, and no way around it by racing submits."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import User
from backserv_site.errors import QuotaExceeded
from tasks import services
from tasks.models import Task, TaskState, UnfinishedCount
from tasks.services import submit_statement

PARAMS = {"prompt": "a quiet harbour", "width": 64, "height": 64, "steps": 2}
SUBMIT = {"task_type": "image_creation", "params": PARAMS}


@pytest.fixture
def quota(settings: Any) -> Any:
    def set_quota(limit: int) -> None:
        settings.BACKSERV = {**settings.BACKSERV, "MAX_UNFINISHED_TASKS": limit}

    return set_quota


def _submit(owner: User) -> Task:
    return services.task_submit(owner=owner, task_type="image_creation", params=PARAMS)


def test_it_refuses_a_submit_past_the_quota_with_429(quota: Any, client: APIClient) -> None:
    quota(2)
    for _ in range(2):
        assert client.post("/api/v1/tasks", SUBMIT, format="json").status_code == 202
    response = client.post("/api/v1/tasks", SUBMIT, format="json")
    assert response.status_code == 429
    assert response.json()["code"] == "QUOTA_EXCEEDED"
    assert "2 unfinished jobs" in response.json()["detail"]
    assert Task.objects.count() == 2


def test_finished_jobs_do_not_count(quota: Any, owner: User) -> None:
    quota(2)
    first, second = _submit(owner), _submit(owner)
    with pytest.raises(QuotaExceeded):
        _submit(owner)
    services.task_cancel(task=first)
    Task.objects.filter(pk=second.pk).update(state=TaskState.STARTED)
    assert _submit(owner).state == TaskState.PENDING
    with pytest.raises(QuotaExceeded):
        _submit(owner)


def test_one_users_jobs_do_not_count_against_another(quota: Any, owner: User, other_user: User) -> None:
    quota(1)
    _submit(owner)
    assert _submit(other_user).owner == other_user


def test_a_users_own_limit_wins_over_the_default(quota: Any, owner: User, other_user: User) -> None:
    quota(1)
    User.objects.filter(pk=owner.pk).update(max_unfinished_tasks=3)
    User.objects.filter(pk=other_user.pk).update(max_unfinished_tasks=0)  # 0: no limit
    for _ in range(3):
        _submit(owner)
    with pytest.raises(QuotaExceeded):
        _submit(owner)
    for _ in range(5):
        _submit(other_user)


def test_a_zero_default_means_no_limit(quota: Any, owner: User) -> None:
    quota(0)
    for _ in range(5):
        _submit(owner)
    assert Task.objects.filter(owner=owner).count() == 5


@pytest.mark.django_db(transaction=True)
def test_racing_submits_never_pass_the_quota(quota: Any, owner: User) -> None:
    quota(3)
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def submit() -> None:
        start.wait()
        try:
            _submit(owner)
            outcome = "accepted"
        except QuotaExceeded:
            outcome = "refused"
        finally:
            connection.close()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["accepted"] * 3 + ["refused"] * 5
    assert Task.objects.filter(owner=owner).count() == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite serializes whole write transactions")
def test_submits_racing_on_both_paths_take_turns_at_the_owner_s_count(
    quota: Any, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half the submits in one statement, half in a transaction (as a batch's are): each
    locks the owner's count, the first as it checks it, the second as its INSERT's
    trigger counts the job, so neither passes the limit nor deadlocks on the other."""
    quota(3)
    applies = submit_statement.applies
    monkeypatch.setattr(
        submit_statement, "applies", lambda: threading.current_thread().name.startswith("statement") and applies()
    )
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8, timeout=30)

    def submit() -> None:
        start.wait()
        try:
            _submit(owner)
            outcome = "accepted"
        except QuotaExceeded:
            outcome = "refused"
        except Exception as error:  # a deadlock, say
            outcome = type(error).__name__
        finally:
            connection.close()
        with lock:
            outcomes.append(outcome)

    names = ["statement", "transaction"] * 4
    threads = [threading.Thread(target=submit, name=f"{name}-{index}") for index, name in enumerate(names)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["accepted"] * 3 + ["refused"] * 5
    assert Task.objects.filter(owner=owner).count() == 3
    assert UnfinishedCount.objects.get(owner=owner).unfinished == 3


def test_a_batch_past_the_quota_refuses_only_the_jobs_beyond_it(quota: Any, client: APIClient) -> None:
    quota(2)
    response = client.post("/api/v1/tasks/batch", {"tasks": [SUBMIT, SUBMIT, SUBMIT]}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert body["results"][2]["status"] == 429
    assert body["results"][2]["error"]["code"] == "QUOTA_EXCEEDED"
