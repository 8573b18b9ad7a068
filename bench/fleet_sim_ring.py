"""What the fixed part of a routing pass costs as a fleet's servers grow, for
bench/fleet_sim.py: a pass (and a submit, whenever any server is registered) takes the
load balancer's row lock, then reads every server with its load (servers.routing:
Router.locked), and holds the lock until it commits. With one process per GPU, a
1,000-GPU fleet is 1,000 servers in that read, and nobody else routes meanwhile.

Timed on an otherwise idle fleet (the simulated workers stopped), over servers
registered for the measure (in maintenance, so nothing is routed to them) and
unregistered after it: in this process, the lock, the read and the commit, through
Django as the workers run them; and one submit after another through the API (its job
then waits for a server). Those servers have no jobs: the load of each is one range of
an index (task_server_state), as it is for a server with its few unfinished jobs."""

from __future__ import annotations

import statistics
import time
from typing import Any

from fleet import Fleet

RING_PREFIX = "ring-"


def ring_costs(fleet: Fleet, sizes: list[int], *, calls: int = 30) -> list[dict[str, Any]]:
    from django.db import transaction

    from servers.models import Server
    from servers.routing import Router
    from servers.services import server_register_worker, server_set_maintenance, server_unregister

    measured = []
    try:
        for size in sizes:
            for index in range(Server.objects.count(), size):
                server = server_register_worker(
                    name=f"{RING_PREFIX}{index:05d}", capabilities=["image_creation"], max_concurrent=2
                )
                server_set_maintenance(server=server, maintenance=True, reason="bench/fleet_sim.py times the ring")
            reads, submits = [], []
            for _ in range(calls):
                began = time.perf_counter()
                with transaction.atomic():
                    Router.locked()
                reads.append((time.perf_counter() - began) * 1000)
            for _ in range(calls):
                began = time.perf_counter()
                fleet.submit(steps=1)
                submits.append((time.perf_counter() - began) * 1000)
            measured.append(
                {
                    "servers": Server.objects.count(),
                    "lock_and_read_ms": _p50_p90(reads),
                    "submit_ms": _p50_p90(submits),
                }
            )
    finally:
        for server in Server.objects.filter(name__startswith=RING_PREFIX):
            server_unregister(server=server)
    return measured


def _p50_p90(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 2), "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 2)}
