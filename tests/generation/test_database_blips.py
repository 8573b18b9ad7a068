"""A database that drops its connections for a moment (a restart, a failover) costs a
running batch nothing: its progress writes and step reads are tried again on a fresh
connection or skipped, and its result is recorded once the database answers.

The blip is made below our code, at the driver: an execute wrapper that Django runs
around every statement of the worker's connections fails the chosen ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import OperationalError
from django.db.backends.signals import connection_created

from tasks.models import Task, TaskEvent, TaskState
from tests.conftest import InProcessWorker


class Blip:
    """Fails the next `failures` statements that `matches` picks, as a dropped
    connection would."""

    def __init__(self, matches: Callable[[str], bool], failures: int):
        self.matches = matches
        self.failures = failures
        self.failed = 0

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if self.failures and self.matches(sql):
            self.failures -= 1
            self.failed += 1
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)


@pytest.fixture
def blip() -> Iterator[Callable[[Blip], Blip]]:
    installed: list[Blip] = []

    def wrap_new_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
        for each in installed:
            if each not in connection.execute_wrappers:
                connection.execute_wrappers.append(each)

    connection_created.connect(wrap_new_connection)

    def install(each: Blip) -> Blip:
        installed.append(each)
        return each

    yield install
    connection_created.disconnect(wrap_new_connection)


def _progress_update(sql: str) -> bool:
    return sql.startswith('UPDATE "tasks_task" SET "progress"')


def _success_update(sql: str) -> bool:
    return sql.startswith('UPDATE "tasks_task"') and "completed_at" in sql and "result" in sql


def _step_read(sql: str) -> bool:
    prefix = 'SELECT "tasks_task"."id" AS "pk", "tasks_task"."state" AS "state"'
    return sql.startswith(prefix) and "cancel_requested" in sql


@pytest.mark.parametrize("statement", [_progress_update, _step_read, _success_update], ids=lambda f: f.__name__)
def test_a_blip_costs_the_running_job_nothing(
    stopped_worker: InProcessWorker,
    submit: Callable[..., dict[str, Any]],
    blip: Callable[[Blip], Blip],
    statement: Callable[[str], bool],
) -> None:
    task_id = submit(prompt="a fox", seed=1, steps=6)["task_id"]
    dropped = blip(Blip(statement, failures=2))
    stopped_worker.start()
    task = stopped_worker.wait_for(task_id)

    assert dropped.failed == 2
    assert (task.state, task.attempts) == (TaskState.SUCCESS, 1)
    assert TaskEvent.objects.filter(task=task, type="succeeded").count() == 1
    assert not TaskEvent.objects.filter(task=task, type="retry_scheduled").exists()
    assert Task.objects.get(pk=task_id).result["outputs"]
