"""A submit in one statement (tasks.services.submit_statement), on Postgres: its round
trips, its answers against the transaction path's, the owners' counts its quota reads,
and its routing decided without the load balancer's lock."""

from __future__ import annotations

import dataclasses
import io
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from psycopg.pq import Trace
from rest_framework.test import APIClient

from accounts.models import User
from backserv_site.errors import QuotaExceeded
from servers import routing
from servers.models import Algorithm, LoadBalancer, Server, ServerKind
from servers.services import load_balancer_set_algorithm, server_register
from tasks import dispatch, services
from tasks.models import UNFINISHED_STATES, Task, TaskEvent, TaskState, UnfinishedCount
from tasks.services import submit_statement

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement submit is Postgres's"),
]

SUBMIT = {"task_type": "image_creation", "params": {"prompt": "a red fox", "width": 64, "height": 64, "steps": 2}}


@pytest.fixture(autouse=True)
def _process_saw_no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    # As a process starts: it has not seen a server registered (earlier tests' may have).
    monkeypatch.setattr(routing, "_servers_registered", False)


@contextmanager
def round_trips() -> Iterator[list[int]]:
    """How many round trips the connection makes inside: libpq's own trace of the wire,
    one ReadyForQuery from the server ending each."""
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    counted: list[int] = []
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS)
        try:
            yield counted
        finally:
            pgconn.untrace()
        trace.seek(0)
        counted.append(len(re.findall(r"^B\t\d+\tReadyForQuery", trace.read(), flags=re.MULTILINE)))


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dispatch.Destination]]:
    """The broker messages sent, in place of sending them."""
    sent: list[tuple[str, dispatch.Destination]] = []
    monkeypatch.setitem(
        dispatch.senders, False, lambda task_id, destination, delay: sent.append((task_id, destination))
    )
    monkeypatch.setitem(dispatch.senders, True, lambda task_id, destination, delay: sent.append((task_id, destination)))
    return sent


@pytest.fixture
def statement_used(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each submit's statement made its job (False: it fell back)."""
    made: list[bool] = []
    run = submit_statement.submit_statement

    def counted(**kwargs: Any) -> submit_statement.Outcome:
        outcome = run(**kwargs)
        made.append(outcome.made)
        return outcome

    monkeypatch.setattr(submit_statement, "submit_statement", counted)
    return made


def _server(name: str, **fields: Any) -> Server:
    fields.setdefault("kind", ServerKind.WORKER)
    fields.setdefault("capabilities", ["image_creation"])
    fields.setdefault("max_concurrent", 100)
    return server_register(name=name, **fields).server


def _counts_agree() -> None:
    for counted in UnfinishedCount.objects.all():
        jobs = Task.objects.filter(owner_id=counted.owner_id, state__in=UNFINISHED_STATES).count()
        assert counted.unfinished == jobs, (counted.owner_id, counted.unfinished, jobs)


def _second_submit_traced(client: APIClient, sends: list[Any]) -> int:
    """The round trips of a submit after a first one (which also records the token's
    use, and teaches the process whether servers are registered); it sends one message."""
    assert client.post("/api/v1/tasks", SUBMIT, format="json").status_code == 202
    sends.clear()
    with round_trips() as trips:
        response = client.post("/api/v1/tasks", SUBMIT, format="json")
    assert response.status_code == 202
    assert [task_id for task_id, _ in sends] == [response.json()["task_id"]]
    return trips[0]


def test_a_submit_is_two_round_trips_and_one_message(
    client: APIClient, sends: list[Any], statement_used: list[bool]
) -> None:
    # The token, then the statement; before it, seven more: BEGIN, whether a server is
    # registered, the job, its event, the owner's lock, the quota and figures, COMMIT.
    assert _second_submit_traced(client, sends) == 2
    assert statement_used == [True, True]


def test_with_servers_registered_a_submit_is_three_round_trips(
    client: APIClient, sends: list[Any], statement_used: list[bool]
) -> None:
    _server("a")
    _server("b")
    # The token, one read of the servers' loads and the balancer, the statement. The
    # first submit finds the servers and falls back; from then on this process plans.
    assert _second_submit_traced(client, sends) == 3
    assert statement_used == [False, True]
    assert LoadBalancer.objects.get().decisions == 2


def _comparable(body: dict[str, Any]) -> dict[str, Any]:
    # What differs between any two jobs, whichever path made them.
    varying = {"task_id", "id", "created_at", "submitted_at", "updated_at", "queued_at", "links", "server_id"}
    params = {key: value for key, value in body["params"].items() if key != "seed"}  # drawn per job
    return {**{key: value for key, value in body.items() if key not in varying}, "params": params}


@pytest.mark.parametrize("servers", [0, 2])
def test_both_paths_give_the_same_answer(
    client: APIClient, owner: User, monkeypatch: pytest.MonkeyPatch, servers: int
) -> None:
    for index in range(servers):
        _server(f"s{index}")
    client.post("/api/v1/tasks", SUBMIT, format="json")  # the process learns what is registered
    body = {**SUBMIT, "priority": 7, "user_id": "end-user-1", "webhook_events": ["start"]}
    one_statement = client.post("/api/v1/tasks", body, format="json")
    monkeypatch.setattr(submit_statement, "applies", lambda: False)
    in_a_transaction = client.post("/api/v1/tasks", body, format="json")
    assert one_statement.status_code == in_a_transaction.status_code == 202, one_statement.json()
    first, second = one_statement.json(), in_a_transaction.json()
    if servers:
        # Each server has one of the jobs: the second is queued behind nothing.
        assert Task.objects.get(pk=first["task_id"]).server_id != Task.objects.get(pk=second["task_id"]).server_id
    else:
        # One shared queue: the second job waits behind the first.
        assert (first["queue_position"], second["queue_position"]) == (0, 1)  # ahead of the warm-up job
        first.pop("queue_position"), second.pop("queue_position")
        first.pop("eta", None), second.pop("eta", None)
    assert _comparable(first) == _comparable(second)
    for job in (first, second):
        assert list(TaskEvent.objects.filter(task_id=job["task_id"]).values_list("type", "state")) == [
            (TaskEvent.Type.SUBMITTED, TaskState.PENDING)
        ]


def test_the_quota_holds_in_one_statement(client: APIClient, owner: User, settings: Any) -> None:
    settings.BACKSERV = {**settings.BACKSERV, "MAX_UNFINISHED_TASKS": 2}
    for _ in range(2):
        assert client.post("/api/v1/tasks", SUBMIT, format="json").status_code == 202
    refused = client.post("/api/v1/tasks", SUBMIT, format="json")
    assert refused.status_code == 429 and refused.json()["code"] == "QUOTA_EXCEEDED"
    assert "2 unfinished jobs" in refused.json()["detail"]
    assert Task.objects.filter(owner=owner).count() == 2
    services.task_cancel(task=Task.objects.filter(owner=owner).first())
    assert client.post("/api/v1/tasks", SUBMIT, format="json").status_code == 202


def test_owners_counts_follow_every_change_of_their_jobs(owner: User, other_user: User) -> None:
    def submit(user: User) -> Task:
        return services.task_submit(owner=user, task_type="image_creation", params=SUBMIT["params"])

    jobs = [submit(owner) for _ in range(4)] + [submit(other_user) for _ in range(3)]
    _counts_agree()
    services.task_cancel(task=jobs[0])
    Task.objects.filter(pk=jobs[1].pk).update(state=TaskState.STARTED)  # unfinished still
    Task.objects.filter(pk__in=[jobs[2].pk, jobs[5].pk]).update(state=TaskState.SUCCESS)  # two owners at once
    _counts_agree()
    services.task_retry(task=Task.objects.get(pk=jobs[0].pk))
    services.task_delete(task=Task.objects.get(pk=jobs[3].pk))
    Task.objects.filter(owner=other_user).delete()
    _counts_agree()
    assert UnfinishedCount.objects.get(owner=owner).unfinished == 2
    assert UnfinishedCount.objects.get(owner=other_user).unfinished == 0
    owner.delete()
    assert not UnfinishedCount.objects.filter(owner_id=owner.pk).exists()
    newcomer = User.objects.create_user(username="newcomer", password="x")
    assert UnfinishedCount.objects.get(owner=newcomer).unfinished == 0


def test_a_user_s_quota_needs_no_count_of_their_jobs(owner: User, settings: Any) -> None:
    """The statement reads the owner's count, not the jobs: a count at the limit refuses
    whatever the jobs are (as the triggers keep it, the two agree)."""
    settings.BACKSERV = {**settings.BACKSERV, "MAX_UNFINISHED_TASKS": 5}
    UnfinishedCount.objects.filter(owner=owner).update(unfinished=5)
    with pytest.raises(QuotaExceeded):
        services.task_submit(owner=owner, task_type="image_creation", params=SUBMIT["params"])
    assert not Task.objects.exists()


def test_a_decision_overtaken_by_another_falls_back_to_the_lock(
    owner: User, monkeypatch: pytest.MonkeyPatch, statement_used: list[bool]
) -> None:
    a, b = _server("a"), _server("b")
    load_balancer_set_algorithm(algorithm=Algorithm.ROUND_ROBIN)
    submit = lambda: services.task_submit(owner=owner, task_type="image_creation", params=SUBMIT["params"])  # noqa: E731
    submit()  # learns that servers are registered
    plan = routing.plan_new_task

    def overtaken(**kwargs: Any) -> Any:
        planned = plan(**kwargs)
        # Another process routes a job between this one's read and its statement.
        routing.tasks_route_waiting()
        LoadBalancer.objects.update(decisions=LoadBalancer.objects.get().decisions + 1)
        return planned

    installed = dispatch.routing
    monkeypatch.setattr(dispatch, "routing", dataclasses.replace(installed, plan_new_task=overtaken))
    first = submit()
    monkeypatch.setattr(dispatch, "routing", installed)
    second = submit()
    assert statement_used[-2:] == [False, True]
    # The fallback routed under the lock, from the ring as saved: the jobs still alternate.
    assert {first.server_id, second.server_id} == {a.pk, b.pk}
    assert Task.objects.filter(server=a).count() + Task.objects.filter(server=b).count() == 3


def test_a_server_registered_after_the_process_last_looked_still_gets_the_job(
    owner: User, statement_used: list[bool]
) -> None:
    submit = lambda: services.task_submit(owner=owner, task_type="image_creation", params=SUBMIT["params"])  # noqa: E731
    assert submit().server is None  # none registered: the shared queue
    server = _server("late")
    assert submit().server_id == server.pk
    assert statement_used == [True, False]  # the guard saw the server: routed under the lock
    assert submit().server_id == server.pk
    assert statement_used[-1] is True


def test_no_server_gets_more_than_its_slots_from_planned_decisions(
    owner: User, statement_used: list[bool], settings: Any
) -> None:
    _server("small", max_concurrent=2)
    settings.BACKSERV = {**settings.BACKSERV, "MAX_UNFINISHED_TASKS": 0}
    tasks = [services.task_submit(owner=owner, task_type="image_creation", params=SUBMIT["params"]) for _ in range(4)]
    assert [task.server is not None for task in tasks] == [True, True, False, False]
    assert Task.objects.filter(state=TaskState.PENDING, queue_name="").count() == 2
    # Once the process knows servers are registered (the first submit finds them, and
    # routes under the lock), waiting is decided in one statement too.
    assert statement_used == [False, True, True, True]


def test_an_idempotent_submit_is_one_statement_too(
    client: APIClient, statement_used: list[bool], sends: list[Any]
) -> None:
    headers: Callable[[str], dict[str, str]] = lambda key: {"HTTP_IDEMPOTENCY_KEY": key}  # noqa: E731
    first = client.post("/api/v1/tasks", SUBMIT, format="json", **headers("k-1"))
    again = client.post("/api/v1/tasks", SUBMIT, format="json", **headers("k-1"))
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["task_id"] == first.json()["task_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert statement_used == [True]
    assert len(sends) == 1


def test_recount_unfinished_mends_counts_made_wrong_behind_the_triggers(owner: User, other_user: User) -> None:
    services.task_submit(owner=owner, task_type="image_creation", params=SUBMIT["params"])
    UnfinishedCount.objects.filter(owner=owner).update(unfinished=40)
    UnfinishedCount.objects.filter(owner=other_user).delete()
    out = io.StringIO()
    call_command("recount_unfinished", stdout=out)
    assert out.getvalue().strip() == "corrected 2 count(s)"
    assert UnfinishedCount.objects.get(owner=owner).unfinished == 1
    assert UnfinishedCount.objects.get(owner=other_user).unfinished == 0
    _counts_agree()
