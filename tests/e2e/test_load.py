"""500 jobs from 20 concurrent clients through a real fleet, a quarter of them cancelled
at random moments (queued, just claimed, running): every job ends in exactly one
terminal state, the counts add up (the stats API agrees), and no stored file is left
that no job owns.

The jobs are Lanczos upscales of a tiny image, so the run measures the service, not
the pipeline."""

from __future__ import annotations

import base64
import io
import random
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db.models import Count
from django.utils import timezone
from PIL import Image

from accounts.models import User
from accounts.services import api_token_create
from tasks.models import TERMINAL_STATES, Task, TaskEvent
from tests.e2e.fleet import TERMINAL_EVENTS, Fleet, needs_services, redis_broker_url, staff_api
from tests.e2e.processes import Api, processes_database_url, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, needs_services]

CLIENTS = 20
JOBS_PER_CLIENT = 25
CANCEL_SHARE = 0.25


def _tiny_png() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 80, 40)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _client_run(api: Api, seed: int, image: str) -> list[dict[str, Any]]:
    """One client: submits its jobs one after another and cancels some, at once or a
    moment later; returns what it was told."""
    rng = random.Random(seed)
    body = {"task_type": "image_upscale", "params": {"image": image, "scale_factor": 2, "method": "lanczos"}}
    records = []
    for _ in range(JOBS_PER_CLIENT):
        response = api.session.post(f"{api.base_url}/api/v1/tasks", json=body, timeout=30)
        assert response.status_code == 202, response.text
        record: dict[str, Any] = {"task_id": response.json()["task_id"], "cancel": None}
        if rng.random() < CANCEL_SHARE:
            time.sleep(rng.choice([0.0, 0.0, 0.02, 0.1, 0.3]))
            cancel = api.session.post(f"{api.base_url}/api/v1/tasks/{record['task_id']}/cancel", timeout=30)
            assert cancel.status_code in (200, 409), cancel.text
            record["cancel"] = (cancel.status_code, cancel.json().get("state"))
        records.append(record)
    return records


def test_500_jobs_from_20_clients_with_random_cancels_each_end_once(
    make_fleet: Callable[..., Fleet],
) -> None:
    fleet = make_fleet(database_url=processes_database_url(), broker_url=redis_broker_url(), PRELOAD_MODELS="0")
    fleet.start_api()
    staff = staff_api(fleet)
    # One thread a process, as a GPU worker runs: two of them take jobs side by side.
    workers = fleet.start_workers("worker-a", "worker-b", staff=staff)
    clients = []
    for index in range(CLIENTS):
        user = User.objects.create_user(username=f"client-{index}")
        clients.append(fleet.client(api_token_create(user=user).secret))
    image = _tiny_png()

    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        runs = pool.map(lambda index: _client_run(clients[index], index, image), range(CLIENTS))
        records = {record["task_id"]: record for run in runs for record in run}
    submitted = time.monotonic() - started
    assert len(records) == CLIENTS * JOBS_PER_CLIENT

    unfinished = Task.objects.filter(pk__in=records).exclude(state__in=TERMINAL_STATES)
    wait_until(lambda: not unfinished.exists(), timeout=240, what="every job to finish", process=workers["worker-a"])
    finished = time.monotonic() - started
    print(f"\n{len(records)} jobs, {CLIENTS} clients: submitted in {submitted:.1f}s, all finished in {finished:.1f}s")

    tasks = {str(task.pk): task for task in Task.objects.filter(pk__in=records)}
    states = Counter(task.state for task in tasks.values())
    assert set(states) <= {"SUCCESS", "REVOKED"}, states
    assert states["SUCCESS"] + states["REVOKED"] == len(records)
    for task_id, record in records.items():
        state = tasks[task_id].state
        if record["cancel"] is None or record["cancel"][0] == 409:
            assert state == "SUCCESS", (record, state)
        elif record["cancel"][1] == "REVOKED":
            assert state == "REVOKED", (record, state)

    terminal_events = (
        TaskEvent.objects.filter(task_id__in=records, type__in=TERMINAL_EVENTS)
        .values("task_id")
        .annotate(count=Count("id"))
    )
    assert {str(row["task_id"]): row["count"] for row in terminal_events} == dict.fromkeys(records, 1)

    stats = staff.session.get(f"{fleet.base_url}/api/v1/stats/tasks", params={"date": timezone.localdate()}, timeout=30)
    assert stats.status_code == 200, stats.text
    counts = stats.json()
    assert (counts["total_tasks"], counts["successful_tasks"], counts["revoked_tasks"]) == (
        len(records),
        states["SUCCESS"],
        states["REVOKED"],
    )
    assert counts["pending_tasks"] == counts["running_tasks"] == counts["failed_tasks"] == 0

    expected_files = {task_id: [f"{task.attempts}-0.png"] for task_id, task in tasks.items() if task.state == "SUCCESS"}
    assert fleet.output_files() == expected_files
    for task_id, files in expected_files.items():
        assert tasks[task_id].result["outputs"][0]["path"] == f"outputs/{task_id}/{files[0]}"
