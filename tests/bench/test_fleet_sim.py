"""bench/fleet_sim.py's smoke run works end to end: its own Postgres and Redis, the API,
registered workers whose threads run the real worker path around a simulated GPU, and
the JSON it writes. What it measures at N=2 and 4 means nothing; that every job ran on
the simulated GPU and succeeded, and that every figure was taken, does."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.bench.smoke import run_smoke
from tests.e2e.services import postgres_server_missing, redis_server_missing

pytestmark = pytest.mark.slow


def test_the_smoke_run_measures_every_point(tmp_path: Path) -> None:
    # The bench starts a Postgres and a Redis of its own, as the fault tests do.
    missing = postgres_server_missing() or redis_server_missing()
    if missing:
        pytest.skip(missing)
    out = tmp_path / "fleet-sim.json"
    # The bench starts its own services and chooses each process's settings.
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "BROKER_URL")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    run_smoke("bench/fleet_sim.py", "--smoke", "--out", str(out), env=env, timeout=300)

    report = json.loads(out.read_text())
    assert report["private_servers"] is True and report["postgres_statements"] is True
    assert [point["threads"] for point in report["points"]] == [2, 4]
    for point in report["points"]:
        (run,) = point["runs"]
        # Every job ran on a simulated GPU, one of each thread's own, and succeeded
        # (wait_finished raises otherwise).
        assert run["simulated_calls"] == run["jobs"]
        assert run["gpus_seen"] == point["threads"]
        assert run["claims_per_s"] > 0 and 0 < run["efficiency"] <= 1.5
        assert run["call_ms"]["p50"] >= 100, "the simulated call sleeps --pipeline-ms"
        assert run["dispatch_ms"]["p50"] is not None and run["idle_gap_ms"]["p50"] is not None
        assert run["submit"]["jobs_per_s"] > 0
        assert run["postgres"]["database"]["commits"] > 0
        assert any("tasks_task" in statement["query"] for statement in run["postgres"]["statements"])
    # The larger point's window holds samples of every part of the fleet.
    sampled = report["points"][-1]["runs"][0]["sampled"]
    assert set(sampled["cpu_cores"]) == {"postgres", "redis", "workers", "api", "bench"}
    assert sampled["cpu_cores"]["workers"] > 0
    assert sampled["connections"]["max"] > 0
    assert [ring["servers"] for ring in report["ring"]] == [3, 6]
    assert all(ring["lock_and_read_ms"]["p50"] > 0 and ring["submit_ms"]["p50"] > 0 for ring in report["ring"])
    assert "verdict" in report["summary"]["knee"]
