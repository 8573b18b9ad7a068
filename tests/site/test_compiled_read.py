"""Reads compiled once: the same rows as the queryset they were built from, each call
with its own values, the SQL built once per database."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import F
from django.db.models.sql.compiler import SQLCompiler
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from backserv_site.db.compiled import CompiledRead, CompiledReads, Slot
from tasks.models import Task, TaskState

pytestmark = pytest.mark.django_db


def _task(owner: User, **fields: object) -> Task:
    return Task.objects.create(owner=owner, task_type="image_creation", queue_name="gpu", **fields)


def test_each_call_reads_the_rows_its_values_pick(owner: User, other_user: User) -> None:
    builds = []

    def build() -> object:
        builds.append(1)
        owner_field = Task._meta.get_field("owner").target_field
        tasks = Task.objects.filter(pk=Slot("pk", Task._meta.pk), owner_id=Slot("owner_id", owner_field))
        return tasks.annotate(doubled=F("priority") * 2)

    read = CompiledRead(build)
    mine, theirs = _task(owner, priority=3), _task(other_user, priority=4)

    assert [(task.pk, task.doubled) for task in read(pk=mine.pk, owner_id=owner.pk)] == [(mine.pk, 6)]
    assert [(task.pk, task.doubled) for task in read(pk=theirs.pk, owner_id=other_user.pk)] == [(theirs.pk, 8)]
    assert read(pk=theirs.pk, owner_id=owner.pk) == []
    assert len(builds) == 1


def test_rows_come_back_as_the_orm_gives_them(owner: User) -> None:
    """Field values pass through the fields' own conversions (JSON, datetimes)."""
    task = _task(owner, params={"prompt": "fox", "steps": [1, 2]}, state=TaskState.PENDING)
    read = CompiledRead(lambda: Task.objects.filter(pk=Slot("pk", Task._meta.pk)))

    (found,) = read(pk=task.pk)
    expected = Task.objects.get(pk=task.pk)

    assert (found.params, found.submitted_at, found.state) == (expected.params, expected.submitted_at, "PENDING")


def test_a_later_call_runs_one_query_and_compiles_none(owner: User, monkeypatch: pytest.MonkeyPatch) -> None:
    task = _task(owner)
    read = CompiledRead(lambda: Task.objects.filter(pk=Slot("pk", Task._meta.pk)))
    read(pk=task.pk)

    def no_compiling(*args: object, **kwargs: object) -> None:
        raise AssertionError("compiled again")

    monkeypatch.setattr(SQLCompiler, "as_sql", no_compiling)
    with CaptureQueriesContext(connection) as queries:
        (found,) = read(pk=task.pk)

    assert found.pk == task.pk
    assert len(queries) == 1


def test_reads_keyed_by_a_bound_build_once_per_bound(owner: User) -> None:
    for priority in range(5):
        _task(owner, priority=priority)
    built: list[int] = []

    def build(limit: int) -> object:
        built.append(limit)
        return Task.objects.filter(owner_id=Slot("owner_id", User._meta.pk)).order_by("-priority")[:limit]

    reads = CompiledReads(build)
    assert [task.priority for task in reads(2, owner_id=owner.pk)] == [4, 3]
    assert [task.priority for task in reads(3, owner_id=owner.pk)] == [4, 3, 2]
    assert [task.priority for task in reads(2, owner_id=owner.pk)] == [4, 3]
    assert built == [2, 3]
