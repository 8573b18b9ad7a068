"""A submit in one statement, on Postgres outside a transaction: the API's most frequent
write, made in one round trip to the database instead of seven.

The statement, in autocommit, is one WITH query whose parts run together:

- figures: the new job's queue position and its queue's lanes
  (tasks.selectors.submit_figures), counted first, before anything is locked;
- route: the routing decision's guard (tasks.dispatch.PlannedRoute), a row only if the
  decision made before the statement, without locks, still holds: no server was
  registered since, or no other decision was saved since the load balancer was read
  (it then saves this one);
- quota: the owner's count of unfinished jobs (tasks.models.UnfinishedCount), locked,
  a row only if it is under the limit. Racing submits of one owner take turns on that
  row, and each sees the count the one before it left: Postgres checks the condition
  again on the row as committed after waiting for its lock;
- job, event: the INSERTs of the job and its SUBMITTED event, made only if the route
  held and the quota let it in;
- then the answer: whether the job was made, which part refused it, and the figures,
  so nothing is read back.

The triggers on the jobs' table count the new job in its owner's count. Where the
statement cannot decide (the route needs the lock, the owner has no count yet) the
submit takes the transaction path (tasks.services.submitting), which gives the same
answers: tests/tasks/test_submit_statement.py runs both.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Field

from tasks.dispatch import PlannedRoute
from tasks.models import UNFINISHED_STATES, Task, TaskEvent, UnfinishedCount
from tasks.selectors import SubmitFigures, submit_figures_sql


def applies() -> bool:
    """Whether a submit now can be one statement: on Postgres, outside a transaction
    (a batch's submits, made in one, each take the transaction path)."""
    connection = connections[DEFAULT_DB_ALIAS]
    return connection.vendor == "postgresql" and not connection.in_atomic_block


@dataclass(frozen=True)
class Outcome:
    """What the statement did: the job was made (with its figures), or it was not, and
    why: the route no longer held, the quota refused it, or the owner has no count."""

    made: bool
    route_held: bool
    counted: bool
    under_quota: bool
    figures: SubmitFigures


def submit_statement(*, task: Task, route: PlannedRoute, quota: int, event_data: dict[str, Any]) -> Outcome:
    """Insert `task` (built, not saved) and its SUBMITTED event if `route` still holds
    and its owner has fewer than `quota` unfinished jobs (0: no limit)."""
    connection = connections[DEFAULT_DB_ALIAS]
    quote = connection.ops.quote_name
    columns, casts = _task_columns()
    task_values = _task_values(task, connection)  # first: it stamps submitted_at, which the figures need
    route_sql, route_params = route.guard()
    figures_sql, figures_params = submit_figures_sql(task=task)
    count_table = quote(UnfinishedCount._meta.db_table)
    counted_sql = f"SELECT 1 FROM {count_table} WHERE owner_id = %s"
    # What is locked, and in which order. The figures are counted first, from the
    # materialized CTE the quota's rows are joined with, before any lock: a long queue
    # takes a while to count, and the owner's other submits wait on the count's lock.
    # The route's EXISTS is computed before the count is locked, so the statement locks
    # as the transaction path does: the load balancer (a fleet's route), then the count.
    if quota:
        quota_sql = (
            f"SELECT 1 FROM figures, {count_table} counted WHERE counted.owner_id = %s "
            "AND counted.unfinished < %s AND EXISTS (SELECT 1 FROM route) FOR NO KEY UPDATE OF counted"
        )
        quota_params = [task.owner_id, quota]
    else:
        # No limit: nothing to check, so nothing to wait for.
        quota_sql, quota_params = "SELECT 1 FROM figures WHERE EXISTS (SELECT 1 FROM route)", []
    event_columns, event_casts = _event_columns()
    sql = (
        f"WITH figures AS MATERIALIZED ({figures_sql}), route AS ({route_sql}), quota AS ({quota_sql}), "
        f"job AS (INSERT INTO {quote(Task._meta.db_table)} ({columns}) SELECT {casts} FROM quota "
        f"RETURNING {quote(Task._meta.pk.column)}), "
        f"event AS (INSERT INTO {quote(TaskEvent._meta.db_table)} ({event_columns}) "
        f"SELECT job.{quote(Task._meta.pk.column)}, {event_casts} FROM job RETURNING 1) "
        "SELECT EXISTS (SELECT 1 FROM job), EXISTS (SELECT 1 FROM route), "
        f"EXISTS ({counted_sql}), EXISTS (SELECT 1 FROM quota), figures.queue_ahead, figures.queue_lanes "
        "FROM figures"
    )
    params = [
        *figures_params,
        *route_params,
        *quota_params,
        *task_values,
        *_event_values(task, event_data, connection),
        task.owner_id,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        made, route_held, counted, under_quota, queue_ahead, queue_lanes = cursor.fetchone()
    figures = SubmitFigures(over_quota=not under_quota, queue_ahead=queue_ahead, queue_lanes=queue_lanes)
    return Outcome(made, route_held, counted or not quota, under_quota, figures)


@cache
def _task_fields() -> tuple[Field, ...]:
    return tuple(Task._meta.concrete_fields)


def _typed(fields: tuple[Field, ...], connection: Any) -> tuple[str, str]:
    """The column list, and a typed placeholder for each: INSERT ... SELECT takes its
    values' types from the SELECT, not from the columns."""
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    casts = ", ".join(f"CAST(%s AS {field.db_type(connection)})" for field in fields)
    return columns, casts


@cache
def _task_columns() -> tuple[str, str]:
    return _typed(_task_fields(), connections[DEFAULT_DB_ALIAS])


def _task_values(task: Task, connection: Any) -> list[Any]:
    # As Model.save() prepares them: pre_save stamps auto_now_add on the instance.
    return [field.get_db_prep_save(field.pre_save(task, True), connection) for field in _task_fields()]


@cache
def _event_fields() -> tuple[Field, ...]:
    return tuple(TaskEvent._meta.get_field(name) for name in ("type", "state", "data", "created_at"))


@cache
def _event_columns() -> tuple[str, str]:
    connection = connections[DEFAULT_DB_ALIAS]
    columns, casts = _typed(_event_fields(), connection)
    return f"{connection.ops.quote_name(TaskEvent._meta.get_field('task').column)}, {columns}", casts


def _event_values(task: Task, event_data: dict[str, Any], connection: Any) -> list[Any]:
    event = TaskEvent(task_id=task.pk, type=TaskEvent.Type.SUBMITTED, state=task.state, data=event_data)
    return [field.get_db_prep_save(field.pre_save(event, True), connection) for field in _event_fields()]


def unfinished_counts_recount() -> int:
    """Set every user's UnfinishedCount to their unfinished jobs as they stand, for a
    database whose triggers were bypassed (a restore with triggers disabled, rows
    changed by hand with them off); how many counts were wrong or missing. Writers to
    the jobs' table wait the moment it takes. Postgres only: SQLite keeps no counts."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql":
        return 0
    quote = connection.ops.quote_name
    jobs, counts = quote(Task._meta.db_table), quote(UnfinishedCount._meta.db_table)
    users = quote(UnfinishedCount._meta.get_field("owner").related_model._meta.db_table)
    unfinished = ", ".join(["%s"] * len(UNFINISHED_STATES))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {jobs} IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute(
            f"INSERT INTO {counts} AS counted (owner_id, unfinished) SELECT users.id, "
            f"(SELECT count(*) FROM {jobs} WHERE owner_id = users.id AND state IN ({unfinished})) FROM {users} users "
            "ON CONFLICT (owner_id) DO UPDATE SET unfinished = EXCLUDED.unfinished "
            "WHERE counted.unfinished <> EXCLUDED.unfinished RETURNING 1",
            sorted(UNFINISHED_STATES),
        )
        return len(cursor.fetchall())
