"""Stats and usage endpoints at a million jobs (Postgres).

Fills backserv_task with 1,000,000 jobs spread over 30 days (one INSERT ... SELECT
over generate_series: seconds, not minutes), run by 8 registered servers and owned by
a heavy user (half of them) and 50 others (1% each), then times GET
/api/v1/stats/tasks, /api/v1/stats/hourly, /api/v1/stats/servers/{id}, the admin
dashboard, GET /api/v1/usage (a user's 30 days, and the heavy user's: 500,000 jobs) and
the admin's usage page (every user's 30 days: the whole table) through Django's test
client with a staff token (the full request path: auth, view, queries, JSON), median
of several runs, and prints each against the 300 ms target. The usage figures are
taken twice: from the jobs alone, then once the sweep has rolled the closed days up
(tasks.usage_rollup), as it does in a running system; the roll-up's own time too.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/backserv_bench python bench/stats.py [--rows N] [--keep]

The database named in DATABASE_URL is filled: use one of its own.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backserv_site.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789-abcdefghijklmnop")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")  # Django's test client is the HTTP client here

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from accounts.models import Scope, User  # noqa: E402
from accounts.services import api_token_create  # noqa: E402
from servers.models import Server, ServerKind  # noqa: E402
from servers.services import server_register  # noqa: E402
from tasks.models import UsageDay, UsageRolledDay  # noqa: E402
from tasks.usage_rollup import usage_day_roll_up  # noqa: E402

TARGET_MS = 300
DAYS = 30

FILL = """
INSERT INTO tasks_task (
    id, owner_id, user_label, task_type, params, priority, state, progress, result, error_code, error_message,
    attempts, max_attempts, queue_timeout_seconds, queued_at, queue_deadline, run_after, queue_name,
    dispatched_at, worker, claimed_at, lease_expires_at, cancel_requested,
    submitted_at, started_at, completed_at, updated_at,
    server_id, "group", wait_reason, webhook, webhook_events, idempotency_key, request_fingerprint, capabilities,
    gpu_seconds, queue_seconds
)
SELECT
    gen_random_uuid(),
    CASE WHEN n %% 2 = 0 THEN %(owner)s ELSE (%(users)s::int[])[1 + n %% array_length(%(users)s::int[], 1)] END,
    '', CASE WHEN n %% 7 = 0 THEN 'video_creation' ELSE 'image_creation' END, '{"prompt": "bench"}'::jsonb, 5,
    outcome.state, CASE WHEN outcome.state = 'SUCCESS' THEN 1 ELSE 0 END, NULL,
    CASE WHEN outcome.state = 'FAILURE' THEN 'PIPELINE_ERROR' ELSE '' END, '',
    CASE WHEN n %% 20 = 0 THEN 2 ELSE 1 END, 3, 600, at.submitted, at.submitted + interval '600 seconds', NULL, 'gpu',
    at.submitted, '', at.submitted, NULL, false,
    at.submitted,
    CASE WHEN outcome.state IN ('SUCCESS', 'FAILURE') THEN at.submitted + interval '2 seconds' END,
    CASE WHEN outcome.state IN ('SUCCESS', 'FAILURE')
         THEN at.submitted + interval '2 seconds' + (n %% 60) * interval '1 second' END,
    at.submitted,
    (%(servers)s::uuid[])[1 + n %% array_length(%(servers)s::uuid[], 1)], '', '', '', '[]'::jsonb, '', '',
    '[]'::jsonb,
    CASE WHEN outcome.state IN ('SUCCESS', 'FAILURE') THEN (n %% 60) / 4.0 END,
    CASE WHEN outcome.state <> 'PENDING' THEN 2.0 END
FROM generate_series(1, %(rows)s) AS n
CROSS JOIN LATERAL (
    SELECT now() - (n::double precision / %(rows)s) * interval '%(days)s days' AS submitted
) AS at
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN n %% 100 < 88 THEN 'SUCCESS' WHEN n %% 100 < 95 THEN 'FAILURE'
        WHEN n %% 100 < 97 THEN 'REVOKED' WHEN n %% 100 < 98 THEN 'TIMEOUT' ELSE 'PENDING'
    END AS state
) AS outcome
"""


SERVERS = 8
USERS = 50


def bench_servers() -> list[Server]:
    servers = list(Server.objects.filter(name__startswith="bench-gpu-").order_by("name"))
    for index in range(len(servers), SERVERS):
        name = f"bench-gpu-{index:02d}"
        servers.append(server_register(name=name, kind=ServerKind.WORKER, capabilities=["image_creation"]).server)
    return servers


def bench_users() -> list[User]:
    return [User.objects.get_or_create(username=f"bench-user-{index:02d}")[0] for index in range(USERS)]


def fill(rows: int, owner: User, users: list[User], servers: list[Server]) -> float:
    started = time.perf_counter()
    values = {
        "owner": owner.pk,
        "users": [user.pk for user in users],
        "rows": rows,
        "days": DAYS,
        "servers": [s.pk for s in servers],
    }
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE tasks_task CASCADE")
        cursor.execute(FILL, values)
        # What autovacuum does soon after a bulk load; the visibility map lets counts by
        # state use index-only scans.
        cursor.execute("VACUUM ANALYZE tasks_task")
    return time.perf_counter() - started


def roll_up() -> tuple[int, float]:
    """Every closed day rolled up, one sweep's call at a time: (days, seconds)."""
    started, days = time.perf_counter(), 0
    while usage_day_roll_up():
        days += 1
    return days, time.perf_counter() - started


def median_ms(client: Client, path: str, runs: int) -> tuple[float, float]:
    timings = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        response = client.get(path)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.content[:300])
    # The first call warms connections and caches; report the steady state.
    steady = timings[1:]
    return statistics.median(steady), max(steady)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="reuse the rows already there")
    options = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("bench/stats.py needs DATABASE_URL=postgres://...")
    call_command("migrate", verbosity=0)
    staff, _ = User.objects.get_or_create(username="bench-staff", defaults={"is_staff": True, "is_superuser": True})
    servers = bench_servers()
    users = bench_users()
    if not options.keep:
        print(f"filling {options.rows:,} jobs over {DAYS} days: {fill(options.rows, staff, users, servers):.1f} s")
        UsageDay.objects.all().delete()
        UsageRolledDay.objects.all().delete()
    api = APIClient()
    token = api_token_create(user=staff, name="bench", scopes=[Scope.READ, Scope.ADMIN])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token.secret}")
    console = Client()
    console.force_login(staff)
    day = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400 * 3))
    user_api = APIClient()
    user_token = api_token_create(user=users[0], name="bench", scopes=[Scope.READ])
    user_api.credentials(HTTP_AUTHORIZATION=f"Bearer {user_token.secret}")
    month = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400 * (DAYS - 1)))
    usage_endpoints = [
        (f"GET /api/v1/usage ({DAYS} d, 1%)", user_api, f"/api/v1/usage?from={month}"),
        (f"GET /api/v1/usage ({DAYS} d, 50%)", api, f"/api/v1/usage?from={month}"),
        (f"admin usage page ({DAYS} d, all)", console, f"/admin/tasks/task/usage/?from={month}"),
    ]
    endpoints = [
        ("GET /api/v1/stats/tasks", api, f"/api/v1/stats/tasks?date={day}"),
        ("GET /api/v1/stats/hourly", api, f"/api/v1/stats/hourly?date={day}"),
        ("GET /api/v1/stats/tasks (today)", api, "/api/v1/stats/tasks"),
        ("GET /api/v1/stats/servers/{id}", api, f"/api/v1/stats/servers/{servers[0].pk}?date={day}"),
        ("admin dashboard (24 h)", console, "/admin/tasks/task/dashboard/"),
    ]
    if not UsageRolledDay.objects.exists():
        endpoints += [(f"{name}, no roll-up", client, path) for name, client, path in usage_endpoints]
    print(f"{'endpoint':44} {'median ms':>10} {'max ms':>8}  target {TARGET_MS} ms")
    report(endpoints, options.runs)
    days, seconds = roll_up()
    if days:
        print(f"rolling up {days} closed day(s): {seconds:.2f} s ({seconds / days * 1000:.0f} ms a day, one a sweep)")
    report([(f"{name}, rolled up", client, path) for name, client, path in usage_endpoints], options.runs)


def report(endpoints: list[tuple[str, Client, str]], runs: int) -> None:
    for name, client, path in endpoints:
        median, worst = median_ms(client, path, runs)
        verdict = "ok" if median < TARGET_MS else "OVER"
        print(f"{name:44} {median:10.1f} {worst:8.1f}  {verdict} ({median / TARGET_MS:.2f} of target)")


if __name__ == "__main__":
    main()
