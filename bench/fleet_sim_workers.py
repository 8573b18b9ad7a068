"""bench/fleet_sim.py's simulated GPUs: `manage.py rundramatiq` processes on the
bench-only worker settings (fleet_sim_app), and how the bench queues their jobs."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fleet import ROOT, Fleet, fleet_env, wait_until
from processes import Process

SERVER_PREFIX = "sim-"
SUBMIT_CHUNK = 100  # BACKSERV_BATCH_MAX_TASKS' default


class Workers:
    """One point's worker processes, its N threads spread over them; each registers as
    a server of its own (BACKSERV_NODE_NAME), unless `shared_queue`: then none does and
    every thread takes its jobs from the one shared queue."""

    def __init__(self, *, threads: int, options: argparse.Namespace, work: Path):
        processes = min(options.processes, threads)
        self.split = [threads // processes + (1 if index < threads % processes else 0) for index in range(processes)]
        self.shared_queue = options.shared_queue
        self.processes: list[Process] = []
        self.started_at = time.time()
        for index, count in enumerate(self.split):
            env = fleet_env(
                DJANGO_SETTINGS_MODULE="fleet_sim_app.settings",
                PYTHONPATH=str(ROOT / "bench"),
                BACKSERV_NODE_NAME=f"{SERVER_PREFIX}{index:02d}",
                BACKSERV_REGISTER_WORKERS="0" if options.shared_queue else "1",
                FLEET_SIM_PIPELINE_MS=str(options.pipeline_ms),
                FLEET_SIM_GPUS=str(count),
                DYNAMIC_BATCH_SIZE=str(options.batch),
                # As on a GPU: a call's storage and success are recorded while the next computes.
                GENERATION_OVERLAP_FINISHING="1",
                GENERATION_CPU_THREADS="1",
                # Each thread holds a connection through its messages, its finishing stage
                # another; the heartbeat, the sweeps and the lease renewals a few more.
                DATABASE_POOL_SIZE=str(options.pool_size or 2 * count + 6),
                # A message per thread, as each GPU's own process takes one in production
                # (the settings' 1 a queue, with one thread a process).
                dramatiq_queue_prefetch=str(count),
                BACKSERV_VAR_DIR=str(work),
                LOG_LEVEL="WARNING",
            )
            command = [sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads", str(count)]
            self.processes.append(Process(command, env, work / f"worker-{index:02d}.log"))

    def session_ids(self) -> list[int]:
        return [process.popen.pid for process in self.processes]

    def wait_registered(self) -> None:
        from servers.models import Server, ServerStatus

        names = [f"{SERVER_PREFIX}{index:02d}" for index in range(len(self.split))]
        since = datetime.fromtimestamp(self.started_at, UTC)

        def online() -> bool:
            self.check_alive()
            servers = Server.objects.filter(name__in=names, status=ServerStatus.ONLINE, registered_at__gte=since)
            return servers.count() == len(names)

        wait_until(online, timeout=180, what=f"{len(names)} worker servers", poll=0.5)

    def check_alive(self) -> None:
        for process in self.processes:
            if not process.alive():
                raise RuntimeError(f"{process.log} ended:\n{process.log.read_text()[-3000:]}")

    def stop(self) -> None:
        for process in self.processes:
            process.stop(timeout=60)


def job_params(options: argparse.Namespace, count: int) -> list[dict[str, Any]]:
    base = {"prompt": "a red fox", "width": 64, "height": 64, "steps": options.steps}
    return [{**base, "seed": seed} for seed in range(count)]


def submit(fleet: Fleet, jobs: list[dict[str, Any]]) -> list[str]:
    """Through the API's batch endpoint, as many a request as it takes."""
    ids: list[str] = []
    for start in range(0, len(jobs), SUBMIT_CHUNK):
        ids += fleet.submit_batch(jobs[start : start + SUBMIT_CHUNK])
    return ids


def servers_in_maintenance(on: bool) -> None:
    """The simulated fleet's servers in maintenance (routed no job) or out of it, as an
    operator's admin action puts them; out of it, the jobs waiting for a server are
    routed to them (servers.services)."""
    from servers.models import Server, ServerStatus
    from servers.services import server_set_maintenance

    for server in Server.objects.filter(name__startswith=SERVER_PREFIX, status=ServerStatus.ONLINE):
        server_set_maintenance(server=server, maintenance=on, reason="bench/fleet_sim.py queues a backlog")


def warm_up(fleet: Fleet, *, workers: Workers, threads: int, options: argparse.Namespace) -> int:
    """Rounds of a job per thread until every thread has run one (or three rounds have
    passed: a thread of a busy process may find its queue emptied by the others each
    time), and at least until every process has: each has then imported torch (its
    model cache does) before the measured run. Returns how many threads ran one."""
    seen: set[tuple[int, int]] = set()
    for _ in range(3):
        tasks = fleet.wait_finished(submit(fleet, job_params(options, threads)), timeout=300, poll=0.5)
        seen |= {(task.result["simulated_call"]["pid"], task.result["simulated_call"]["thread"]) for task in tasks}
        if len(seen) >= threads:
            break
    processes = {pid for pid, _ in seen}
    if len(processes) < len(workers.split):
        raise RuntimeError(
            f"after 3 rounds of warm-up jobs only {len(processes)} of {len(workers.split)} processes had run one"
        )
    return len(seen)
