"""Back.Serv against a FastAPI + Celery peer doing the same job on the same tiny model.

The peer (bench/peer/app.py, worker.py, store.py) is a small FastAPI + Celery 5 job
service written the usual way: pydantic validation, a bearer token looked up in a tokens
table, SQLAlchemy 2 + psycopg 3 on a Postgres database of its own, a Celery task sent per
job on Redis, a solo worker running diffusers' StableDiffusionPipeline on the tiny model
Back.Serv's embedded default uses, with as many torch threads. It has its own
requirements: `bench/peer/setup.sh` installs them into bench/peer/.venv. Back.Serv runs
as a fleet, as docs/fleet.md says (bench/fleet.py). Both APIs run under uvicorn with 2
workers; each side has one worker process with one thread.

Every case runs in alternating rounds (peer, Back.Serv, peer, ...):

- submit: POST req/s, 32 clients keeping a request each in flight, no worker running on
  either side (the jobs stay queued, as in bench/api.py);
- status: GET of one queued job, req/s, the same clients;
- e2e: N jobs (64x64, 10 steps) submitted one after another over HTTP, jobs/s from the
  first job's submitted_at to the last one's completed_at; Back.Serv with batching off
  (DYNAMIC_BATCH_SIZE=1);
- dispatch: submit -> started on an idle worker (the submitted_at the API wrote to the
  started_at the worker wrote), one 1-step job at a time, p50, as bench/dispatch.py;
- e2e-batching: e2e with Back.Serv's batching on (its default; the peer has none).

The last two run with Back.Serv as shipped (batching on). Prints each side's min /
median / max over the rounds and the ratio of the medians, Back.Serv over the peer.

    bench/peer/setup.sh                                  # once: the peer's virtualenv
    python bench/peer/compare.py [--rounds 3] [--json out.json]
    python bench/peer/compare.py --smoke                 # seconds, not minutes

Back.Serv's fleet uses DATABASE_URL and BROKER_URL (defaults: a database and a Redis DB
of this script's own, so it never clears another benchmark's); the peer PEER_DATABASE_URL
and PEER_BROKER_URL (defaults: backserv_peer and Redis DB 8 on localhost).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/backserv_bench_peer_compare"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/10"
E2E_PARAMS = {"prompt": "a red fox", "width": 64, "height": 64, "steps": 10}
SIDES = ("peer", "backserv")
SMOKE = {"rounds": 1, "seconds": 1.0, "dispatch_jobs": 3, "idle": 0.1, "jobs": 4}
CASES = {
    # name: (unit, which way is better, what it is)
    "submit": ("req/s", "higher", "POST a job, {clients} clients"),
    "status": ("req/s", "higher", "GET a queued job, {clients} clients"),
    "e2e": ("jobs/s", "higher", "{jobs} jobs end to end, one worker thread, Back.Serv's batching off"),
    "dispatch": ("ms", "lower", "p50 submit -> started, one job at a time on an idle worker"),
    "e2e-batching": ("jobs/s", "higher", "{jobs} jobs end to end, Back.Serv's batching on (default)"),
}


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per case, each side once a round")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of load per submit/status measurement")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--jobs", type=int, default=48, help="jobs per end-to-end measurement")
    parser.add_argument("--dispatch-jobs", type=int, default=40, help="jobs per dispatch measurement")
    parser.add_argument("--idle", type=float, default=0.3, help="seconds a worker sits idle before a dispatch job")
    parser.add_argument("--threads", type=int, default=0, help="torch threads of both workers; 0: cores - 1")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--smoke", action="store_true", help="one short round of every case")
    options = parser.parse_args(argv)
    if options.smoke:
        for key, value in SMOKE.items():
            setattr(options, key, value)
    for key in ("rounds", "clients", "jobs", "dispatch_jobs"):
        if getattr(options, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be at least 1")
    if options.threads == 0:
        # Back.Serv's own default (GENERATION_CPU_THREADS=0), given to both workers.
        options.threads = max(len(os.sched_getaffinity(0)) - 1, 1)
    return options


def spread(values: Sequence[float]) -> dict[str, Any]:
    return {"rounds": list(values), "min": min(values), "median": statistics.median(values), "max": max(values)}


def summarize(rounds: dict[str, list[float]], *, unit: str, better: str, what: str) -> dict[str, Any]:
    """Each side's spread over the rounds and the ratio of their medians, Back.Serv over
    the peer (above 1: Back.Serv's figure is larger, which for a latency is worse). Each
    round's own ratio too: its two figures were taken minutes apart at most, where the
    medians may come from rounds far apart on a machine whose speed drifts."""
    peer, backserv = spread(rounds["peer"]), spread(rounds["backserv"])
    round_ratios = [ours / theirs for ours, theirs in zip(rounds["backserv"], rounds["peer"], strict=True)]
    return {
        "what": what,
        "unit": unit,
        "better": better,
        "peer": peer,
        "backserv": backserv,
        "ratio": backserv["median"] / peer["median"],
        "round_ratios": spread(round_ratios),
    }


def summary_lines(cases: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        f"{'case':13} {'unit':7} {'FastAPI + Celery':>18} {'Back.Serv':>16} {'Back.Serv / peer':>17} {'per round':>13}"
    ]
    for name, case in cases.items():
        peer, backserv, round_ratios = case["peer"], case["backserv"], case["round_ratios"]
        note = "" if case["better"] == "higher" else "  (lower is better)"
        lines.append(
            f"{name:13} {case['unit']:7} {peer['min']:8.1f} / {peer['median']:<7.1f} "
            f"{backserv['min']:7.1f} / {backserv['median']:<7.1f} {case['ratio']:10.2f}       "
            f"{round_ratios['min']:4.2f} / {round_ratios['median']:<4.2f}{note}"
        )
    lines.append("min / median over the rounds; the ratio of the medians; each round's ratio, min / median")
    return lines


def run_case(
    name: str, sides: dict[str, Any], measure: Callable[[Any], float], options: argparse.Namespace
) -> dict[str, list[float]]:
    """`measure` of each side in turn, peer first, for `rounds` rounds."""
    print(f"{name}: {CASES[name][2].format(**vars(options))}", flush=True)
    figures: dict[str, list[float]] = {side: [] for side in SIDES}
    for round_number in range(1, options.rounds + 1):
        for side in SIDES:
            figures[side].append(measure(sides[side]))
            print(f"  round {round_number} {sides[side].name:18} {figures[side][-1]:9.2f}", flush=True)
    return figures


def request_rate(side: Any, options: argparse.Namespace, *, path: str, body: dict[str, Any] | None = None) -> float:
    """Requests/s of `clients` clients keeping a request each in flight for `seconds`:
    a POST of `body` to `path`, or a GET of it."""
    from api import load

    def send(client: Any, headers: dict[str, str]) -> Any:
        if body is None:
            return client.get(path, headers=headers)
        return client.post(path, json=body, headers=headers)

    latencies: list[float] = []
    elapsed = asyncio.run(
        load(side, send, latencies, clients=options.clients, seconds=options.seconds, tokens=[side.token])
    )
    return len(latencies) / elapsed


def dispatch_p50(side: Any, options: argparse.Namespace) -> float:
    latencies = []
    for _ in range(options.dispatch_jobs):
        time.sleep(options.idle)
        timing = side.timings([side.submit(steps=1)], poll=0.01)[0]
        latencies.append((timing.started_at - timing.submitted_at).total_seconds() * 1000)
    return statistics.median(latencies)


def end_to_end_rate(side: Any, options: argparse.Namespace) -> float:
    ids = [side.submit(**E2E_PARAMS, seed=seed) for seed in range(options.jobs)]
    timings = side.timings(ids)
    first = min(timing.submitted_at for timing in timings)
    last = max(timing.completed_at for timing in timings)
    return options.jobs / (last - first).total_seconds()


def measure_all(options: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """Every case, in three stretches: the APIs alone; then both workers, Back.Serv's
    batching off; then Back.Serv's worker restarted as shipped. Each worker starts on
    an empty queue (the API cases leave thousands of jobs queued)."""
    from fleet import fleet_env, manage
    from stacks import SUBMIT_BODY, BackServ, Peer

    figures = {}
    worker_env = {"GENERATION_CPU_THREADS": str(options.threads)}
    # The model folder the peer's worker loads too.
    manage("make_demo_models", env=fleet_env())
    with Peer(cpu_threads=options.threads) as peer, BackServ() as backserv:
        sides = {"peer": peer, "backserv": backserv}
        queued = {side.name: side.submit() for side in sides.values()}
        figures["submit"] = run_case(
            "submit", sides, lambda side: request_rate(side, options, path=side.submit_path, body=SUBMIT_BODY), options
        )
        figures["status"] = run_case(
            "status", sides, lambda side: request_rate(side, options, path=side.status_path(queued[side.name])), options
        )
        peer.start_worker()
        backserv.start_worker({**worker_env, "DYNAMIC_BATCH_SIZE": "1"})
        figures["e2e"] = run_case("e2e", sides, lambda side: end_to_end_rate(side, options), options)
        backserv.start_worker(worker_env)
        figures["dispatch"] = run_case("dispatch", sides, lambda side: dispatch_p50(side, options), options)
        figures["e2e-batching"] = run_case("e2e-batching", sides, lambda side: end_to_end_rate(side, options), options)
    return figures


def report(figures: dict[str, dict[str, list[float]]], options: argparse.Namespace, **host: Any) -> dict[str, Any]:
    cases = {}
    for name, rounds in figures.items():
        unit, better, what = CASES[name]
        cases[name] = summarize(rounds, unit=unit, better=better, what=what.format(**vars(options)))
    return {
        "options": {key: str(value) if isinstance(value, Path) else value for key, value in vars(options).items()},
        "host": host,
        "cases": cases,
    }


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_arguments(argv)
    # bench/fleet.py and the peer's stacks.py; only now, so that importing this module
    # (the tests of its summary) puts nothing on the path.
    sys.path[:0] = [str(BENCH_DIR), str(BENCH_DIR / "peer")]
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.setdefault("BROKER_URL", DEFAULT_BROKER_URL)
    from fleet import setup_django

    setup_django()
    started, load_before = datetime.now(UTC), os.getloadavg()
    print(f"torch threads, both workers: {options.threads}; {options.rounds} rounds, peer first", flush=True)
    figures = measure_all(options)
    result = report(
        figures,
        options,
        date=started.isoformat(timespec="seconds"),
        minutes=round((datetime.now(UTC) - started).total_seconds() / 60, 1),
        hostname=platform.node(),
        cores=os.cpu_count(),
        load_average_before=load_before,
        load_average_after=os.getloadavg(),
    )
    print("\n".join(summary_lines(result["cases"])))
    if options.json:
        options.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
