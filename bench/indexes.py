"""Which index each hot query of tasks_task uses, on Postgres, over a table of mostly
finished jobs: EXPLAIN (ANALYZE) of the queries as the code builds them, the indexes'
sizes, and the table's index count.

    python bench/indexes.py [--jobs 300000] [--database backserv_bench_indexes]

It creates (and at the end drops) its own database on DATABASE_URL's server (default
postgres://postgres@127.0.0.1:5432), migrates it, and fills it with `--jobs` jobs: 97%
finished, the rest waiting or running on two queues and three servers, for 50 owners.
Each line names the query, the indexes its plan reads and its median time of 7 runs. A query that reads
the whole table (Seq Scan on tasks_task) is flagged.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Each query runs this many times; the median is printed (the first run reads from disk).
ROUNDS = 7
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300_000)
    parser.add_argument("--database", default="backserv_bench_indexes")
    parser.add_argument("--keep", action="store_true", help="leave the database for a second look")
    args = parser.parse_args()

    server = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres").rsplit("/", 1)[0]
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{args.database}"')
        admin.execute(f'CREATE DATABASE "{args.database}"')
    os.environ.update(
        DATABASE_URL=f"{server}/{args.database}",
        DJANGO_SETTINGS_MODULE="backserv_site.settings",
        DATABASE_POOL_SIZE="0",
        BACKSERV_VAR_DIR=os.environ.get("BACKSERV_VAR_DIR", "/tmp/backserv-bench-indexes"),
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    try:
        _fill(args.jobs)
        _report()
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{args.database}"')


def _fill(jobs: int) -> None:
    """`jobs` rows in one INSERT ... SELECT: 97% finished (most SUCCESS), 2% PENDING on
    two queues, 1% running, spread over 50 owners, three servers and 30 days."""
    from django.db import connection
    from django.utils.timezone import now

    from accounts.models import User
    from servers.models import Server

    owners = [User.objects.create(username=f"owner{index}") for index in range(50)]
    servers = [
        Server.objects.create(
            name=f"gpu{index}", queue_name=f"gpu.{index}", key_prefix=f"k{index}", key_hash="-", registered_at=now()
        )
        for index in range(3)
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO tasks_task (id, owner_id, user_label, task_type, params, priority, state, progress,
                error_code, error_message, attempts, max_attempts, queue_timeout_seconds, queued_at,
                queue_deadline, batch_key, queue_name, server_id, "group", capabilities, wait_reason, worker,
                lease_expires_at, cancel_requested, webhook, webhook_events, idempotency_key,
                request_fingerprint, submitted_at, started_at, completed_at, updated_at)
            SELECT gen_random_uuid(), (%(owners)s)[1 + n %% 50], '',
                (ARRAY['image_creation', 'image_upscale'])[1 + n %% 2],
                '{}'::jsonb, n %% 10, s.state, 0, '', '', 1, 3, 600, t, t + interval '10 minutes', '',
                (ARRAY['backserv', 'gpu.1'])[1 + n %% 2], (%(servers)s)[1 + n %% 3], '', '[]'::jsonb, '',
                CASE WHEN s.state IN ('RECEIVED', 'STARTED') THEN 'w' ELSE '' END,
                CASE WHEN s.state IN ('RECEIVED', 'STARTED') THEN now() + interval '30 seconds' END,
                false, '', '[]'::jsonb, '', '', t, t + interval '1 second',
                CASE WHEN s.state IN ('PENDING', 'RECEIVED', 'STARTED') THEN NULL ELSE t + interval '3 seconds' END,
                t
            FROM generate_series(1, %(jobs)s) AS n,
                LATERAL (SELECT now() - (n * interval '30 days' / %(jobs)s) AS t) AS at,
                LATERAL (SELECT CASE
                    WHEN n %% 100 < 2 THEN 'PENDING' WHEN n %% 100 = 2 THEN 'STARTED'
                    WHEN n %% 100 < 6 THEN 'FAILURE' ELSE 'SUCCESS' END AS state) AS s
            """,
            {"owners": [owner.pk for owner in owners], "servers": [server.pk for server in servers], "jobs": jobs},
        )
        cursor.execute("ANALYZE tasks_task")


def _queries() -> list[tuple[str, Any]]:
    """(name, a queryset or a (sql, params) pair) of each hot query, as the code builds it."""
    from datetime import timedelta

    from django.db.models import Q
    from django.utils import timezone

    from accounts.models import User
    from servers import routing
    from tasks import selectors, stats
    from tasks.models import ACTIVE_STATES, UNFINISHED_STATES, Task, TaskState
    from tasks.services import running

    now = timezone.now()
    owner = User.objects.order_by("pk").first()
    waiting = Task.objects.filter(state=TaskState.PENDING, queue_name="backserv").order_by("-submitted_at").first()
    assert owner is not None and waiting is not None
    figures = selectors._submit_figures(100).filter(pk=owner.pk)
    figures_sql, figures_params = figures.query.sql_with_params()
    slots = {
        "owner_id": owner.pk,
        "queue_name": waiting.queue_name,
        "priority": waiting.priority,
        "submitted_at": waiting.submitted_at,
    }
    return [
        ("claim: a queue's best waiting jobs", running._claimable(queue_name="backserv", now=now)[:8]),
        ("submit: quota, queue position and lanes", _bound(figures_sql, figures_params, slots)),
        (
            "status: a job's lanes",
            Task.objects.filter(queue_name="backserv", state__in=ACTIVE_STATES).order_by(),
        ),
        ("sweep: expired leases", Task.objects.filter(state__in=ACTIVE_STATES, lease_expires_at__lt=now)),
        ("sweep: queue deadlines", Task.objects.filter(state=TaskState.PENDING, queue_deadline__lt=now)),
        (
            "dashboard: oldest waiting job",
            Task.objects.filter(state=TaskState.PENDING, queued_at__lte=now).order_by("queued_at")[:1],
        ),
        ("routing: load per server", routing._servers_with_load()),
        (
            "ETA: a type's recent runs",
            Task.objects.filter(
                task_type="image_creation", state=TaskState.SUCCESS, completed_at__gte=now - timedelta(days=1)
            )
            .exclude(started_at=None)
            .order_by("-completed_at")
            .values_list("started_at", "completed_at")[:20],
        ),
        ("list: an owner's newest jobs", Task.objects.filter(owner=owner).order_by("-submitted_at")[:20]),
        (
            "quota (without the submit): an owner's unfinished jobs",
            Task.objects.filter(owner=owner, state__in=UNFINISHED_STATES).order_by(),
        ),
        (
            "stats: a day's finished jobs",
            Task.objects.filter(completed_at__gte=now - timedelta(days=1), completed_at__lt=now).filter(
                Q(state=TaskState.SUCCESS)
            ),
        ),
        ("stats: a day's submits", Task.objects.filter(submitted_at__gte=now - timedelta(days=1))),
        ("stats: queue depth", stats.Task.objects.filter(state=TaskState.PENDING)),
    ]


def _bound(sql: str, params: tuple[Any, ...], slots: dict[str, Any]) -> tuple[str, list[Any]]:
    """A compiled read's SQL with its slots (backserv_site.db.compiled) filled in."""
    from backserv_site.db.compiled import _SlotValue

    values = [slots[param.name] if isinstance(param, _SlotValue) else param for param in params]
    return sql, values


def _report() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes "
            "WHERE relname = 'tasks_task' ORDER BY indexrelname"
        )
        sizes = cursor.fetchall()
        print(f"tasks_task: {len(sizes)} indexes")
        for name, size in sizes:
            print(f"  {name:40s} {size / 1024:10.0f} KiB")
        print()
        for name, query in _queries():
            if isinstance(query, tuple):
                sql, params = query
            else:
                sql, params = query.query.sql_with_params()
            times = []
            for _ in range(ROUNDS):
                cursor.execute("EXPLAIN (ANALYZE, FORMAT TEXT) " + sql, params)
                plan = "\n".join(row[0] for row in cursor.fetchall())
                took = re.search(r"Execution Time: ([\d.]+) ms", plan)
                times.append(float(took.group(1)) if took else 0.0)
            used = sorted(set(re.findall(r"Index (?:Only )?Scan(?: Backward)? using (\w+)", plan)))
            used += sorted(set(re.findall(r"Bitmap Index Scan on (\w+)", plan)) - set(used))
            scanned = "  SEQ SCAN of tasks_task" if "Seq Scan on tasks_task" in plan else ""
            print(f"{name:55s} {statistics.median(times):8.2f} ms  {', '.join(used) or '-'}{scanned}")


if __name__ == "__main__":
    main()
