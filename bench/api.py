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

    python bench/api.py [--seconds 5] [--clients 32] [--rounds 3] [--slices 4] [--users 1]

By default every client uses one user's token, as one backend firing 32 requests at
once would: that user's queue and unfinished jobs then grow by thousands, and the
submit's quota check and queue position count them (the baseline's rows belong to a
user of their own, so they do not). `--users 32` gives each client a user (and token)
of its own, as 32 people would be.
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
AUTH = "Authorization"
# A request: the client, and the headers (the token) of the simulated client sending it.
Send = Callable[[httpx2.AsyncClient, dict[str, str]], Any]
SUBMIT_BODY = {"task_type": "image_creation", "params": {"prompt": "a red fox", "width": 64, "height": 64}}


def load_alternating(
    fleet: Fleet, sends: tuple[Send, Send], *, clients: int, seconds: float, slices: int, tokens: list[str]
) -> list[tuple[float, float, float]]:
    """Requests/s, p50 ms, p99 ms of each of the two sends, `seconds` each, measured in
    `slices` alternating slices: this machine's speed drifts over seconds, and both
    sides then see the same drift."""
    latencies: tuple[list[float], list[float]] = ([], [])
    elapsed = [0.0, 0.0]
    for _ in range(slices):
        for side, send in enumerate(sends):
            elapsed[side] += asyncio.run(
                load(fleet, send, latencies[side], clients=clients, seconds=seconds / slices, tokens=tokens)
            )
    figures = []
    for side_latencies, side_elapsed in zip(latencies, elapsed, strict=True):
        side_latencies.sort()
        p99 = side_latencies[min(len(side_latencies) - 1, round(0.99 * (len(side_latencies) - 1)))]
        figures.append((len(side_latencies) / side_elapsed, statistics.median(side_latencies), p99))
    return figures


async def load(
    fleet: Fleet, send: Send, latencies: list[float], *, clients: int, seconds: float, tokens: list[str]
) -> float:
    """Keeps `clients` requests in flight for `seconds`, adding each one's latency (ms)
    to `latencies`; returns the seconds it took. Client i sends with tokens[i % len]."""
    failures: list[int] = []
    limits = httpx2.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx2.AsyncClient(base_url=fleet.base_url, limits=limits, timeout=30) as client:
        deadline = time.perf_counter() + seconds

        async def one_client(token: str) -> None:
            headers = {"Authorization": f"Bearer {token}"}
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await send(client, headers)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code >= 300:
                    failures.append(response.status_code)

        started = time.perf_counter()
        await asyncio.gather(*(one_client(tokens[index % len(tokens)]) for index in range(clients)))
        elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return elapsed


def own_job(fleet: Fleet, token: str) -> str:
    """A job submitted with `token`, for its user's status reads."""
    headers = {"Authorization": f"Bearer {token}"}
    response = fleet.session.post(f"{fleet.base_url}/api/v1/tasks", json=SUBMIT_BODY, headers=headers, timeout=30)
    response.raise_for_status()
    return response.json()["task_id"]


def user_tokens(fleet: Fleet, users: int) -> list[str]:
    """One token per user: the fleet's own for one, else a user each, their jobs from
    earlier runs deleted."""
    if users <= 1:
        return [fleet.session.headers["Authorization"].removeprefix("Bearer ")]
    from accounts.services import api_token_create, user_ensure
    from tasks.models import Task

    Task.objects.filter(owner__username__startswith="bench-api-user-").delete()
    return [
        api_token_create(user=user_ensure(username=f"bench-api-user-{index}"), name="bench").secret
        for index in range(users)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slices", type=int, default=4, help="alternating slices per measurement")
    parser.add_argument("--users", type=int, default=1, help="users the clients are spread over, a token each")
    options = parser.parse_args()
    setup_django()
    with Fleet(with_worker=False, api_workers=2, settings_module="baseline.settings") as fleet:
        tokens = user_tokens(fleet, options.users)
        # Each user reads a job of its own (another's is not found).
        job_of = {f"Bearer {token}": own_job(fleet, token) for token in tokens}
        cases = {
            "submit": (
                lambda client, headers: client.post("/bench/insert", json=SUBMIT_BODY, headers=headers),
                lambda client, headers: client.post("/api/v1/tasks", json=SUBMIT_BODY, headers=headers),
            ),
            "status": (
                lambda client, headers: client.get(f"/bench/constant/{job_of[headers[AUTH]]}", headers=headers),
                lambda client, headers: client.get(f"/api/v1/tasks/{job_of[headers[AUTH]]}", headers=headers),
            ),
        }
        print(
            f"{options.clients} clients of {options.users} user(s), {options.seconds:.0f} s per measurement in "
            f"{options.slices} slices alternating with the baseline's, uvicorn with 2 workers"
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
                    tokens=tokens,
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
