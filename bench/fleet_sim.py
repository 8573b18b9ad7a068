"""Scale beyond one machine, by simulation: N simulated GPUs against one Postgres and one
broker, and what gives out first as N grows.

Each simulated GPU is a worker thread of a real `manage.py rundramatiq` process, running
the real worker path (the dramatiq actor, generation.runner, the claim, start, step
checks, progress, storage and success services, their events, the routing pass after
each run) with only the pipeline call replaced by a sleep of --pipeline-ms: the workers
run bench-only settings (bench/fleet_sim_app, through DJANGO_SETTINGS_MODULE) that point
text-to-image at a pipeline module that sleeps, with a model of its own per thread, so
each thread runs its own calls as each GPU's process does. The GPU is never the limit;
the control plane is. The workers run as GPU workers do: one job a call (--batch), each
call's finishing on its own thread (GENERATION_OVERLAP_FINISHING), each process a
registered server of its own (BACKSERV_NODE_NAME), N threads spread over --processes
processes; --shared-queue runs them unregistered, all on the one shared queue.

For each N the workers start and each thread runs a warm-up job; then N x
--jobs-per-thread jobs (at least --min-jobs) are queued through the API's batch endpoint
(POST /api/v1/tasks/batch, 100 a request) while the servers are in maintenance, and
released at once (with --shared-queue: queued before the workers start). Measured over
the steady window, from the moment every GPU has begun its first job to the last claim
made while N jobs or more were still waiting (every GPU had work throughout):

- claims/s against the ideal N / pipeline time (efficiency);
- dispatch: from a GPU's call ending to its next job's claim (ready -> claimed), and the
  GPU's idle gap, to its next call beginning (p50 / p99, over every GPU's calls);
- CPU of each part in cores (Postgres: the postmaster and every backend; the workers;
  the API; Redis; this process), from /proc, and what the rest of the host took;
- Postgres: connections by state, sessions waiting on a lock and the statements they
  wait in (pg_stat_activity), lock requests not granted (pg_locks), 5 samples a second;
  transactions per job (pg_stat_database); the statements that took its time
  (pg_stat_statements);
- while the backlog was queued: the API's submit rate and each part's CPU per job.

After the points, --ring-sizes times the fixed part of a routing pass (the load
balancer's lock and the read of every server) as the registered servers grow
(bench/fleet_sim_ring.py).

By default Postgres and Redis are servers of the bench's own (bench/fleet_sim_servers.py),
so their CPU is theirs alone and max_connections fits the fleet; --database-url and
--broker-url use existing ones instead (CPU is then read from the database's backends
only, and the statements only where pg_stat_statements is loaded).

    python bench/fleet_sim.py [--threads 10,25,50,100,200] [--processes 4]
        [--pipeline-ms 500] [--jobs-per-thread 8] [--repeats 2] [--shared-queue]
        [--ring-sizes 10,100,1000] [--out fleet-sim.json]
    python bench/fleet_sim.py --smoke --out /tmp/fleet-sim.json   # a minute or two, tiny N
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet import Fleet, setup_django
from fleet_sim_report import measure_run, print_table, summarize
from fleet_sim_ring import ring_costs
from fleet_sim_sampler import Part, PostgresStats, ProcessTable, Sampler
from fleet_sim_servers import PrivatePostgres, PrivateRedis, private_servers_missing
from fleet_sim_workers import Workers, job_params, servers_in_maintenance, submit, warm_up


def parse_options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="10,25,50,100,200", help="the N simulated GPUs of each point ('': none)")
    parser.add_argument("--processes", type=int, default=4, help="worker processes the N threads are spread over")
    parser.add_argument("--pipeline-ms", type=float, default=500.0, help="the simulated pipeline call")
    parser.add_argument("--steps", type=int, default=20, help="steps of each job (a step check after each)")
    parser.add_argument("--jobs-per-thread", type=int, default=8)
    parser.add_argument("--min-jobs", type=int, default=200, help="jobs of a point at least")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each point")
    parser.add_argument("--batch", type=int, default=1, help="DYNAMIC_BATCH_SIZE of the workers")
    parser.add_argument("--pool-size", type=int, default=0, help="DATABASE_POOL_SIZE a worker (0: 2 x threads + 6)")
    parser.add_argument("--shared-queue", action="store_true", help="unregistered workers on the one shared queue")
    parser.add_argument("--ring-sizes", default="", help="registered servers to time a routing pass's read at")
    parser.add_argument("--database-url", default="", help="an existing Postgres (default: one of the bench's own)")
    parser.add_argument("--broker-url", default="", help="an existing Redis (default: one of the bench's own)")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    parser.add_argument("--smoke", action="store_true", help="tiny N and short jobs, for the test suite")
    options = parser.parse_args()
    if options.smoke:
        options.threads, options.processes, options.pipeline_ms, options.steps = "2,4", 2, 100.0, 5
        options.jobs_per_thread, options.min_jobs, options.repeats, options.ring_sizes = 3, 60, 1, "3,6"
    options.thread_counts = [int(value) for value in options.threads.split(",") if value]
    options.ring_counts = [int(value) for value in options.ring_sizes.split(",") if value]
    if bool(options.database_url) != bool(options.broker_url):
        parser.error("--database-url and --broker-url go together")
    return options


@contextmanager
def services(options: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """The database and broker URLs, and how to find Postgres' and Redis' processes."""
    if options.database_url:
        yield {"database_url": options.database_url, "broker_url": options.broker_url, "private": False}
        return
    missing = private_servers_missing()
    if missing:
        sys.exit(f"cannot start the bench's own Postgres and Redis ({missing}): give --database-url and --broker-url")
    # Two connections a thread, a few a process, and the API's and the bench's.
    postgres = PrivatePostgres(max_connections=3 * max(options.thread_counts, default=0) + 20 * options.processes + 60)
    redis = PrivateRedis()
    try:
        postgres.start()
        redis.start()
        assert redis.process is not None
        yield {
            "database_url": postgres.url,
            "broker_url": redis.url,
            "private": True,
            "postmaster": postgres.postmaster_pid(),
            "redis_pid": redis.process.popen.pid,
        }
    finally:
        redis.stop()
        postgres.stop()


class Simulation:
    """The fleet around the simulated GPUs (the API, the database, the broker), what is
    sampled of it, and the points measured on it."""

    def __init__(self, *, options: argparse.Namespace, service: dict[str, Any], fleet: Fleet, work: Path):
        self.options = options
        self.service = service
        self.fleet = fleet
        self.work = work
        self.workers: Workers | None = None
        self.postgres = PostgresStats(service["database_url"])
        self.sampler = Sampler(
            parts=self._parts(), database_url=self.postgres.maintenance_url, database=self.postgres.database
        )

    def _parts(self) -> dict[str, Part]:
        """How the sampler finds the processes of each part of the fleet."""

        def workers(table: ProcessTable) -> list[int]:
            return table.sessions(self.workers.session_ids()) if self.workers is not None else []

        found: dict[str, Part] = {
            "workers": workers,
            "api": lambda table: table.sessions([self.fleet.processes[0].popen.pid]),
            "bench": lambda table: [os.getpid()],
        }
        if self.service["private"]:
            found["postgres"] = lambda table: table.with_children(self.service["postmaster"])
            found["redis"] = lambda table: [self.service["redis_pid"]]
        else:
            # Only the fleet database's backends, as they are at each sample.
            found["postgres"] = lambda table: self.sampler.backend_pids
        return found

    def _start_workers(self, threads: int) -> Workers:
        self.workers = Workers(threads=threads, options=self.options, work=self.work)
        return self.workers

    def _stop_workers(self) -> None:
        if self.workers is not None:
            self.workers.stop()
            self.workers = None
            self.fleet.forget_stopped_workers()

    def point(self, threads: int) -> list[dict[str, Any]]:
        """One N, measured --repeats times: registered workers are started and warmed up
        once; on the shared queue they start after each backlog is queued."""
        try:
            if not self.options.shared_queue:
                workers = self._start_workers(threads)
                workers.wait_registered()
                warm_up(self.fleet, workers=workers, threads=threads, options=self.options)
            runs = []
            for repeat in range(1, self.options.repeats + 1):
                run = self._run(threads)
                run["repeat"] = repeat
                runs.append(run)
                claims, efficiency = run["claims_per_s"], run["efficiency"]
                print(f"  N={threads} run {repeat}: {claims:.1f} claims/s, efficiency {efficiency:.2f}")
                if self.options.shared_queue:
                    self._stop_workers()
            return runs
        finally:
            self._stop_workers()

    def _run(self, threads: int) -> dict[str, Any]:
        from tasks.models import Task

        options = self.options
        jobs = max(threads * options.jobs_per_thread, options.min_jobs)
        before = self.postgres.reset()
        self.sampler.forget_lock_waits()
        if not options.shared_queue:
            # Queued while the servers take no job, then released at once: what follows
            # measures the fleet draining a backlog, not the API filling it.
            servers_in_maintenance(True)
        began = time.time()
        ids = submit(self.fleet, job_params(options, jobs))
        queued = time.time()
        if options.shared_queue:
            self._start_workers(threads)
        else:
            servers_in_maintenance(False)
        assert self.workers is not None
        self.workers.check_alive()
        self.fleet.wait_finished(ids, timeout=max(600, 5 * jobs * options.pipeline_ms / 1000 / threads), poll=0.5)
        rows = Task.objects.filter(pk__in=ids).values("submitted_at", "started_at", "completed_at", "result")
        run = measure_run(
            list(rows), threads=threads, pipeline_ms=options.pipeline_ms, batch=options.batch, queued=queued
        )
        window = run["window"]
        run.update(
            processes=len(self.workers.split),
            threads_per_process=self.workers.split,
            submit={"seconds": round(queued - began, 2), "jobs_per_s": round(jobs / (queued - began), 1)},
            submit_sampled=self.sampler.window(began, queued),
            sampled=self.sampler.window(window["start"], window["end"]),
            lock_waits_seen=self.sampler.top_lock_waits(),
            postgres=self.postgres.since(before),
            load_average=os.getloadavg(),
        )
        run["per_job"] = per_job(run)
        return run


def per_job(run: dict[str, Any]) -> dict[str, Any]:
    """Costs per job: each part's CPU milliseconds over the window (and over the
    backlog's queueing), and Postgres' transactions and statements over the whole run."""

    def cpu_ms(sampled: dict[str, Any], seconds: float, jobs: int) -> dict[str, float]:
        return {name: round(cores * seconds / jobs * 1000, 2) for name, cores in sampled.get("cpu_cores", {}).items()}

    postgres = run["postgres"]
    calls = postgres["statement_calls"]
    return {
        "cpu_ms": cpu_ms(run["sampled"], run["window"]["seconds"], max(run["window"]["claims"], 1)),
        "submit_cpu_ms": cpu_ms(run["submit_sampled"], run["submit"]["seconds"], run["jobs"]),
        "commits": round(postgres["database"]["commits"] / run["jobs"], 2),
        "statements": round(calls / run["jobs"], 1) if calls is not None else None,
        "statement_ms": round(postgres["statement_ms"] / run["jobs"], 2) if calls is not None else None,
    }


def host() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }


def main() -> None:
    options = parse_options()
    # Terminated (a test's timeout, a CI job cancelled): unwind as from Ctrl-C, so the
    # servers and processes this bench started are stopped on the way out.
    signal.signal(signal.SIGTERM, interrupt)
    report: dict[str, Any] = {"host": host(), "points": []}
    with ExitStack() as stack:
        work = stack.enter_context(tempfile.TemporaryDirectory(prefix="backserv-sim-"))
        service = stack.enter_context(services(options))
        os.environ.update(
            DATABASE_URL=service["database_url"],
            BROKER_URL=service["broker_url"],
            BACKSERV_VAR_DIR=work,
            DJANGO_SETTINGS_MODULE="backserv_site.settings",
        )
        setup_django()
        fleet = stack.enter_context(Fleet(with_worker=False))
        simulation = Simulation(options=options, service=service, fleet=fleet, work=Path(work))
        stack.enter_context(simulation.sampler)
        report.update(
            options={
                key: value for key, value in vars(options).items() if key not in ("out", "thread_counts", "ring_counts")
            },
            private_servers=service["private"],
            postgres_statements=simulation.postgres.statements,
        )
        queue = "one shared queue" if options.shared_queue else "registered servers"
        print(
            f"{len(options.thread_counts)} points, {options.processes} processes, pipeline {options.pipeline_ms:g} ms,"
            f" {options.steps} steps, batch {options.batch}, {queue}; {'private' if service['private'] else 'shared'}"
            " Postgres and Redis"
        )
        for threads in options.thread_counts:
            report["points"].append({"threads": threads, "runs": simulation.point(threads)})
            if options.out:
                # As it goes: a long run that fails late keeps what it measured.
                options.out.write_text(json.dumps(report, indent=2, default=str))
        report["ring"] = ring_costs(fleet, options.ring_counts) if options.ring_counts else []
        report["summary"] = summarize(report["points"])
        report["host"]["load_average_at_end"] = os.getloadavg()
    print_table(report)
    if options.out:
        options.out.write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {options.out}")


def interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
