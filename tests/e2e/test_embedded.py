"""The embedded server (`manage.py serve`: API, worker threads and in-process broker in
one process on SQLite), driven over HTTP, killed with SIGKILL mid-job and started again."""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.e2e.processes import MID_RUN_STEPS, Api, Process, free_port, healthy, manage, process_env, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def embedded(tmp_path: Path, demo_models: Path) -> Iterator[tuple[dict[str, str], Api, list[Process]]]:
    env = process_env(
        BACKSERV_VAR_DIR=str(tmp_path / "var"),
        MODEL_IMAGE_CREATION=str(demo_models / "tiny-sd"),
        BACKSERV_LEASE_SECONDS="6",
        GENERATION_MAX_STEPS="1000",
    )
    env.pop("SECRET_KEY")  # embedded mode keeps its own key under the var dir
    manage("migrate", "--noinput", env=env)
    token = manage("create_api_token", "admin", "--staff", env=env).strip().splitlines()[-1]
    port = free_port()
    env["E2E_PORT"] = str(port)
    processes: list[Process] = []
    yield env, Api(f"http://127.0.0.1:{port}", token), processes
    for process in processes:
        process.stop()


def _serve(env: dict[str, str], log: Path) -> Process:
    port = env["E2E_PORT"]
    process = Process([sys.executable, "manage.py", "serve", "--port", port], env, log)
    wait_until(lambda: healthy(f"http://127.0.0.1:{port}"), timeout=60, what="the server", process=process)
    return process


def test_the_curl_flow_gives_a_png(embedded: tuple[dict[str, str], Api, list[Process]], tmp_path: Path) -> None:
    env, api, processes = embedded
    processes.append(_serve(env, tmp_path / "serve.log"))
    started = time.monotonic()
    task_id = api.submit(width=64, height=64, steps=4, seed=7)["task_id"]
    job = api.wait_state(task_id, {"SUCCESS", "FAILURE"}, timeout=60, process=processes[0])
    print(f"embedded submit -> SUCCESS: {time.monotonic() - started:.2f}s (first job, includes model load)")
    started = time.monotonic()
    again = api.wait_state(api.submit(width=64, height=64, steps=4, seed=7)["task_id"], {"SUCCESS"}, timeout=30)
    print(f"embedded submit -> SUCCESS: {time.monotonic() - started:.2f}s (warm)")

    assert job["state"] == "SUCCESS", job
    png = requests.get(job["result"]["url"], timeout=10)
    assert png.status_code == 200 and png.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (64, 64)
    assert requests.get(again["result"]["url"], timeout=10).content == png.content


def test_a_job_survives_the_server_being_killed_mid_run(
    embedded: tuple[dict[str, str], Api, list[Process]], tmp_path: Path
) -> None:
    env, api, processes = embedded
    first = _serve(env, tmp_path / "first.log")
    task_id = api.submit(width=64, height=64, steps=MID_RUN_STEPS, seed=3)["task_id"]

    def mid_run() -> bool:
        job = api.job(task_id)
        return job["state"] == "STARTED" and job["progress"] > 0.02

    wait_until(mid_run, timeout=60, what="the job to be mid-run", process=first)
    first.kill()

    processes.append(_serve(env, tmp_path / "second.log"))
    job = api.wait_state(task_id, {"SUCCESS", "FAILURE", "REVOKED"}, timeout=300, process=processes[0])

    assert job["state"] == "SUCCESS", job
    assert job["attempts"] == 2
    outputs = job["result"]["outputs"]
    assert len(outputs) == 1 and "/2-0.png" in outputs[0]["url"]
    media = Path(env["BACKSERV_VAR_DIR"]) / "media" / "outputs" / task_id
    assert sorted(path.name for path in media.iterdir()) == ["2-0.png"]


def test_a_gpu_worker_process_runs_the_jobs_and_is_replaced_when_it_dies(
    embedded: tuple[dict[str, str], Api, list[Process]], tmp_path: Path
) -> None:
    """GENERATION_WORKER_PROCESS (on by default with a GPU): the jobs run in a child
    process; its change notices wake the server's waiters at once, and a child killed
    mid-job is replaced, the job finishing on its next attempt."""
    env, api, processes = embedded
    env.update(
        GENERATION_WORKER_PROCESS="1",
        # Waiters re-read the database only this often: a prompt answer needs the notice.
        BACKSERV_NOTIFY_POLL_SECONDS="120",
        BACKSERV_SWEEP_INTERVAL_SECONDS="1",
    )
    server = _serve(env, tmp_path / "serve.log")
    processes.append(server)

    body = {"task_type": "image_creation", "params": {"prompt": "a fox", "width": 64, "height": 64, "steps": 4}}
    started = time.monotonic()
    answer = api.session.post(f"{api.base_url}/api/v1/tasks", json=body, headers={"Prefer": "wait=60"}, timeout=90)
    # Without the child's notice the wait would run out (202) before the first re-read.
    assert (answer.status_code, answer.json()["state"]) == (200, "SUCCESS"), answer.text
    print(f"worker process: submit -> SUCCESS {time.monotonic() - started:.2f}s (first job, includes the model load)")
    worker_pid = int(api.job(answer.json()["task_id"])["attempts_history"][0]["worker"].rsplit(":", 1)[1])
    assert worker_pid != server.popen.pid

    task_id = api.submit(width=64, height=64, steps=MID_RUN_STEPS, seed=3)["task_id"]

    def mid_run() -> bool:
        job = api.job(task_id)
        return job["state"] == "STARTED" and job["progress"] > 0.02

    wait_until(mid_run, timeout=60, what="the job to be mid-run", process=server)
    os.kill(worker_pid, signal.SIGKILL)
    job = api.wait_state(task_id, {"SUCCESS", "FAILURE", "REVOKED"}, timeout=300, process=server)
    assert (job["state"], job["attempts"]) == ("SUCCESS", 2), job
    second_pid = int(api.job(task_id)["attempts_history"][-1]["worker"].rsplit(":", 1)[1])
    assert second_pid not in (worker_pid, server.popen.pid)
