"""Stats endpoints at a million jobs (Postgres).

Fills backserv_task with 1,000,000 jobs spread over 30 days (one INSERT ... SELECT
over generate_series: seconds, not minutes) and run by 8 registered servers, then
times GET /api/v1/stats/tasks, /api/v1/stats/hourly, /api/v1/stats/servers/{id} and
the admin dashboard through Django's test client with a staff
token (the full request path: auth, view, queries, JSON), median of several runs,
and prints each against the 300 ms target.

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

TARGET_MS = 300
DAYS = 30

FILL = """
INSERT INTO tasks_task (
    id, owner_id, user_label, task_type, params, priority, state, progress, result, error_code, error_message,
    attempts, max_attempts, queue_timeout_seconds, queued_at, queue_deadline, run_after, queue_name,
    dispatched_at, worker, claimed_at, lease_expires_at, cancel_requested,
    submitted_at, started_at, completed_at, updated_at,
    server_id, "group", wait_reason, webhook, webhook_events, idempotency_key, request_fingerprint, capabilities
)
SELECT
    gen_random_uuid(), %(owner)s, '', 'image_creation', '{"prompt": "bench"}'::jsonb, 5,
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
    '[]'::jsonb
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


def bench_servers() -> list[Server]:
    servers = list(Server.objects.filter(name__startswith="bench-gpu-").order_by("name"))
    for index in range(len(servers), SERVERS):
        name = f"bench-gpu-{index:02d}"
        servers.append(server_register(name=name, kind=ServerKind.WORKER, capabilities=["image_creation"]).server)
    return servers


def fill(rows: int, owner: User, servers: list[Server]) -> float:
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE tasks_task CASCADE")
        cursor.execute(FILL, {"owner": owner.pk, "rows": rows, "days": DAYS, "servers": [s.pk for s in servers]})
        # What autovacuum does soon after a bulk load; the visibility map lets counts by
        # state use index-only scans.
        cursor.execute("VACUUM ANALYZE tasks_task")
    return time.perf_counter() - started


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
    if not options.keep:
        print(f"filling {options.rows:,} jobs over {DAYS} days: {fill(options.rows, staff, servers):.1f} s")
    api = APIClient()
    token = api_token_create(user=staff, name="bench", scopes=[Scope.READ, Scope.ADMIN])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token.secret}")
    console = Client()
    console.force_login(staff)
    day = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400 * 3))
    endpoints = [
        ("GET /api/v1/stats/tasks", api, f"/api/v1/stats/tasks?date={day}"),
        ("GET /api/v1/stats/hourly", api, f"/api/v1/stats/hourly?date={day}"),
        ("GET /api/v1/stats/tasks (today)", api, "/api/v1/stats/tasks"),
        ("GET /api/v1/stats/servers/{id}", api, f"/api/v1/stats/servers/{servers[0].pk}?date={day}"),
        ("admin dashboard (24 h)", console, "/admin/tasks/task/dashboard/"),
    ]
    print(f"{'endpoint':36} {'median ms':>10} {'max ms':>8}  target {TARGET_MS} ms")
    for name, client, path in endpoints:
        median, worst = median_ms(client, path, options.runs)
        verdict = "ok" if median < TARGET_MS else "OVER"
        print(f"{name:36} {median:10.1f} {worst:8.1f}  {verdict} ({median / TARGET_MS:.2f} of target)")


if __name__ == "__main__":
    main()
