"""API throughput and latency under 32 concurrent clients, against bare DRF views.

The API runs under its production server (uvicorn, 2 worker processes, Postgres +
Redis, DEBUG off); no GPU worker runs, so submitted jobs stay queued. An asyncio
client keeps 32 requests in flight for a few seconds per endpoint:

- submit: POST /api/v1/tasks (validation, quota, routing, INSERT + event, the broker
  message) vs a bare DRF view doing one INSERT of a job row;
- status: GET /api/v1/tasks/{id} vs a bare DRF view returning constant JSON.

Both baselines run in the same server with the same middleware and DRF settings
(token authentication, scopes, throttling), from bench/baseline/. Within a round the
baseline and Back.Serv take turns in short slices (this machine's speed drifts over
seconds); the ratio of throughputs is printed per round, then min / median / max.
Targets: submit >= 0.7, status >= 0.7.

    python bench/api.py [--seconds 5] [--clients 32] [--rounds 3] [--slices 4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet import Fleet, setup_django, spread

TARGET = 0.7
Send = Callable[[httpx2.AsyncClient], Any]
SUBMIT_BODY = {"task_type": "image_creation", "params": {"prompt": "a red fox", "width": 64, "height": 64}}


def load_alternating(
    fleet: Fleet, sends: tuple[Send, Send], *, clients: int, seconds: float, slices: int
) -> list[tuple[float, float, float]]:
    """Requests/s, p50 ms, p99 ms of each of the two sends, `seconds` each, measured in
    `slices` alternating slices: this machine's speed drifts over seconds, and both
    sides then see the same drift."""
    latencies: tuple[list[float], list[float]] = ([], [])
    elapsed = [0.0, 0.0]
    for _ in range(slices):
        for side, send in enumerate(sends):
            elapsed[side] += asyncio.run(load(fleet, send, latencies[side], clients=clients, seconds=seconds / slices))
    figures = []
    for side_latencies, side_elapsed in zip(latencies, elapsed, strict=True):
        side_latencies.sort()
        p99 = side_latencies[min(len(side_latencies) - 1, round(0.99 * (len(side_latencies) - 1)))]
        figures.append((len(side_latencies) / side_elapsed, statistics.median(side_latencies), p99))
    return figures


async def load(fleet: Fleet, send: Send, latencies: list[float], *, clients: int, seconds: float) -> float:
    """Keeps `clients` requests in flight for `seconds`, adding each one's latency (ms)
    to `latencies`; returns the seconds it took."""
    failures: list[int] = []
    limits = httpx2.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": fleet.session.headers["Authorization"]}
    async with httpx2.AsyncClient(base_url=fleet.base_url, headers=headers, limits=limits, timeout=30) as client:
        deadline = time.perf_counter() + seconds

        async def one_client() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await send(client)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code >= 300:
                    failures.append(response.status_code)

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slices", type=int, default=4, help="alternating slices per measurement")
    options = parser.parse_args()
    setup_django()
    with Fleet(with_worker=False, api_workers=2, settings_module="baseline.settings") as fleet:
        task_id = fleet.submit()["task_id"]
        cases = {
            "submit": (
                lambda client: client.post("/bench/insert", json=SUBMIT_BODY),
                lambda client: client.post("/api/v1/tasks", json=SUBMIT_BODY),
            ),
            "status": (
                lambda client: client.get(f"/bench/constant/{task_id}"),
                lambda client: client.get(f"/api/v1/tasks/{task_id}"),
            ),
        }
        print(
            f"{options.clients} clients, {options.seconds:.0f} s per measurement in {options.slices} slices "
            "alternating with the baseline's, uvicorn with 2 workers"
        )
        columns = ("bare req/s", "p50/p99 ms", "ours req/s", "p50/p99 ms")
        print(f"{'case':8} {'round':>5} " + " ".join(f"{column:>13}" for column in columns) + f" {'ratio':>6}")
        summary = []
        for name, (bare_request, our_request) in cases.items():
            ratios = []
            for round_number in range(1, options.rounds + 1):
                bare, ours = load_alternating(
                    fleet,
                    (bare_request, our_request),
                    clients=options.clients,
                    seconds=options.seconds,
                    slices=options.slices,
                )
                ratios.append(ours[0] / bare[0])
                print(
                    f"{name:8} {round_number:>5} {bare[0]:13.0f} {bare[1]:6.1f}/{bare[2]:<6.1f} "
                    f"{ours[0]:13.0f} {ours[1]:6.1f}/{ours[2]:<6.1f} {ratios[-1]:6.2f}"
                )
            summary.append((name, ratios))
    for name, ratios in summary:
        verdict = "ok" if sorted(ratios)[len(ratios) // 2] >= TARGET else "UNDER"
        print(f"{name}: ratio min / median / max {spread(ratios)}  target >= {TARGET}: {verdict}")


if __name__ == "__main__":
    main()
