"""The broker or the database going away under a real fleet, and coming back. Each test
stops a private server of its own, never the machine's shared Redis or Postgres."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
import requests

from tests.e2e.fleet import Fleet, assert_finished_once, needs_services, redis_broker_url, staff_api
from tests.e2e.processes import MID_RUN_STEPS, Api, manage, processes_database_url, wait_until
from tests.e2e.services import PrivatePostgres, PrivateRedis

pytestmark = [pytest.mark.e2e, pytest.mark.slow, needs_services]

FINISHED = {"SUCCESS", "FAILURE", "REVOKED", "TIMEOUT"}


def test_submits_while_the_broker_is_down_are_kept_and_run_once_it_returns(
    make_fleet: Callable[..., Fleet], private_redis: PrivateRedis
) -> None:
    fleet = make_fleet(database_url=processes_database_url(), broker_url=private_redis.url)
    fleet.start_api()
    staff = staff_api(fleet)
    worker = fleet.start_worker("worker-a", staff=staff)
    warm = staff.submit(width=64, height=64, steps=2, seed=1)["task_id"]
    staff.wait_state(warm, FINISHED, timeout=120, process=worker)

    private_redis.stop()
    health = requests.get(f"{fleet.base_url}/health", timeout=10)
    assert health.status_code == 503
    assert health.json()["checks"]["broker"].startswith("error")
    started = time.monotonic()
    submitted = [staff.submit(width=64, height=64, steps=2, seed=seed) for seed in range(2, 7)]
    print(f"\n5 submits with the broker down: {time.monotonic() - started:.2f}s")
    assert {job["state"] for job in submitted} == {"PENDING"}
    # Longer than a redispatch period: the sweeps' re-sends fail too while it is down.
    time.sleep(3)
    assert {staff.job(job["task_id"])["state"] for job in submitted} == {"PENDING"}

    # Back empty: every message sent before the stop is gone with it.
    private_redis.start()
    returned = time.monotonic()
    jobs = [staff.wait_state(job["task_id"], FINISHED, timeout=60, process=worker) for job in submitted]
    print(f"broker back -> all 5 SUCCESS: {time.monotonic() - returned:.2f}s")

    assert [job["state"] for job in jobs] == ["SUCCESS"] * 5
    for job in jobs:
        assert job["attempts"] == 1
        assert_finished_once(staff, job)
    assert requests.get(f"{fleet.base_url}/health", timeout=10).status_code == 200


def _assert_database_unavailable(response: requests.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "database_unavailable"
    assert response.json()["detail"]
    assert response.headers["Retry-After"]


def test_workers_carry_on_after_postgres_restarts_and_the_api_answers_503_meanwhile(
    make_fleet: Callable[..., Fleet], private_postgres: PrivatePostgres
) -> None:
    fleet = make_fleet(database_url=private_postgres.url, broker_url=redis_broker_url())
    manage("migrate", "--noinput", env=fleet.env)
    staff = fleet.client(manage("create_api_token", "operator", "--staff", env=fleet.env).strip().splitlines()[-1])
    fleet.start_api()
    worker = fleet.start_worker("worker-a", staff=staff)
    running = staff.submit(width=64, height=64, steps=MID_RUN_STEPS, seed=5)["task_id"]
    wait_until(
        lambda: staff.job(running)["state"] == "STARTED" and staff.job(running)["progress"] > 0.02,
        timeout=120,
        what="the job mid-run",
        process=worker,
    )

    private_postgres.stop()
    stopped = time.monotonic()
    _assert_database_unavailable(staff.session.get(f"{fleet.base_url}/api/v1/tasks/{running}", timeout=10))
    _assert_database_unavailable(
        staff.session.post(
            f"{fleet.base_url}/api/v1/tasks",
            json={"task_type": "image_creation", "params": {"prompt": "a lighthouse"}},
            timeout=10,
        )
    )
    # The other documents' routes, in their own error bodies.
    ticket = staff.session.get(f"{fleet.base_url}/query_task/{running}", timeout=10)
    assert (ticket.status_code, ticket.json()["error"]) == (503, "database_unavailable")
    history = staff.session.get(f"{fleet.base_url}/api/history", timeout=10)
    assert (history.status_code, history.json()["code"]) == (503, "DATABASE_ERROR")
    health = requests.get(f"{fleet.base_url}/health", timeout=10)
    assert health.status_code == 503
    assert health.json()["checks"]["database"].startswith("error")
    # Long enough for the running job, the sweeps and the heartbeats to hit the outage.
    time.sleep(max(0.0, 3 - (time.monotonic() - stopped)))
    private_postgres.start()

    # As a client following Retry-After: a request may still meet the outage's end.
    job = wait_until(partial(_finished, staff, running), timeout=120, what="the job to finish", process=worker)
    after = staff.wait_state(staff.submit(width=64, height=64, steps=2, seed=6)["task_id"], FINISHED, timeout=60)

    assert job["state"] == "SUCCESS", job
    assert_finished_once(staff, job)
    assert after["state"] == "SUCCESS", after
    assert after["attempts"] == 1
    assert worker.popen.poll() is None
    assert fleet.server_status(staff, "worker-a") == "online"

    # Restarted while nobody asked anything: the connections kept open (worker threads
    # keep theirs) are stale, and none of them may cost a request or a job its answer.
    private_postgres.stop()
    private_postgres.start()
    statuses = [staff.session.get(f"{fleet.base_url}/api/v1/tasks/{running}", timeout=10).status_code for _ in range(6)]
    assert statuses == [200] * 6
    last = staff.wait_state(staff.submit(width=64, height=64, steps=2, seed=7)["task_id"], FINISHED, timeout=60)
    assert (last["state"], last["attempts"]) == ("SUCCESS", 1), last


def _finished(api: Api, task_id: str) -> dict[str, Any] | None:
    response = api.session.get(f"{api.base_url}/api/v1/tasks/{task_id}", timeout=30)
    if response.status_code == 503:
        return None
    assert response.status_code == 200, response.text
    return response.json() if response.json()["state"] in FINISHED else None
