"""Workers that die or are told to stop, in a real fleet (uvicorn + `rundramatiq` on the
test database and Redis): no job is lost, none ends twice, no output is written twice."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.e2e.fleet import Fleet, assert_finished_once, needs_services, redis_broker_url, staff_api
from tests.e2e.processes import MID_RUN_STEPS, Api, processes_database_url, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, needs_services]


@pytest.fixture
def fleet(make_fleet: Callable[..., Fleet]) -> Fleet:
    fleet = make_fleet(database_url=processes_database_url(), broker_url=redis_broker_url())
    fleet.start_api()
    return fleet


@pytest.fixture
def staff(fleet: Fleet) -> Api:
    return staff_api(fleet)


def _running(api: Api, task_id: str, *, past: float) -> bool:
    job = api.job(task_id)
    return job["state"] == "STARTED" and job["progress"] > past


def test_a_job_whose_worker_is_killed_runs_again_on_another_once_its_lease_expires(fleet: Fleet, staff: Api) -> None:
    first = fleet.start_worker("worker-a", staff=staff)
    task_id = staff.submit(width=64, height=64, steps=MID_RUN_STEPS, seed=3)["task_id"]
    wait_until(lambda: _running(staff, task_id, past=0.02), timeout=90, what="the job mid-run", process=first)

    killed_at = time.monotonic()
    first.kill()
    # No worker at all for a while: nobody renews the lease, nobody sweeps.
    fleet.start_worker("worker-b", staff=staff)
    job = staff.wait_state(task_id, {"SUCCESS", "FAILURE", "REVOKED", "TIMEOUT"}, timeout=120)
    print(f"\nkill -9 mid-job -> SUCCESS on the second worker: {time.monotonic() - killed_at:.1f}s")

    assert job["state"] == "SUCCESS", job
    history = staff.job(task_id)["attempts_history"]
    assert [attempt["worker"].split(":")[0] for attempt in history] == ["worker-a"] * (len(history) - 1) + ["worker-b"]
    assert history[-1]["outcome"] == "succeeded"
    assert "succeeded" not in [attempt["outcome"] for attempt in history[:-1]]
    events = assert_finished_once(staff, job)
    assert "requeued" in events
    assert fleet.output_files() == {task_id: [f"{job['attempts']}-0.png"]}


def test_sigterm_lets_the_running_job_finish_and_leaves_the_waiting_ones_for_another_worker(
    fleet: Fleet, staff: Api
) -> None:
    fleet.start_worker("worker-a", staff=staff)
    running = staff.submit(width=64, height=64, steps=MID_RUN_STEPS, seed=1)["task_id"]
    waiting = [staff.submit(width=64, height=64, steps=2, seed=seed)["task_id"] for seed in (2, 3, 4)]
    wait_until(lambda: _running(staff, running, past=0.05), timeout=90, what="the job mid-run")

    assert fleet.terminate_worker("worker-a") == 0

    finished = staff.job(running)
    assert finished["state"] == "SUCCESS", finished
    assert finished["attempts"] == 1
    assert fleet.server_status(staff, "worker-a") == "offline"
    assert {staff.job(task_id)["state"] for task_id in waiting} == {"PENDING"}

    fleet.start_worker("worker-b", staff=staff)
    jobs = [staff.wait_state(task_id, {"SUCCESS", "FAILURE", "REVOKED", "TIMEOUT"}, timeout=60) for task_id in waiting]

    assert [job["state"] for job in jobs] == ["SUCCESS"] * 3
    for job in [finished, *jobs]:
        assert_finished_once(staff, job)
    assert fleet.output_files() == {job["task_id"]: [f"{job['attempts']}-0.png"] for job in [finished, *jobs]}
