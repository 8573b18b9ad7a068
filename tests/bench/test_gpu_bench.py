"""bench/gpu.py's CPU mode runs end to end: the bare loops, the embedded system driven
over HTTP, and the JSON it writes. What it measures on a CPU means nothing; that it
measures every variant, and that every job of the system's runs succeeds, does."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.bench.smoke import run_smoke

pytestmark = pytest.mark.slow

SERVICE_VARS = ("DATABASE_URL", "BROKER_URL", "CACHE_URL", "REDIS_URL")


def test_the_smoke_run_measures_every_variant(tmp_path: Path, demo_models: Path) -> None:
    out = tmp_path / "gpu.json"
    # The embedded mode only: with services in the environment its server would join them.
    env = {key: value for key, value in os.environ.items() if key not in SERVICE_VARS}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    run_smoke("bench/gpu.py", "--smoke", "--out", str(out), "--models-dir", str(demo_models), env=env, timeout=300)

    report = json.loads(out.read_text())
    assert report["ok"] and report["errors"] == []
    assert set(report["bare"]) == {"eager-b1", "optimized-b1", "eager-bN", "optimized-bN"}
    assert set(report["system"]) == {"system-b1", "system-bN"}
    assert report["fleet"] is None
    for name, run in {**report["bare"], **report["system"]}.items():
        assert run["jobs_per_s"] > 0, name
        # Nothing to sample on a CPU.
        assert run["gpu_busy_pct"] is None and run["gpu_memory_peak_mb"] is None, name
    for name, run in report["system"].items():
        assert run["all_success"] and run["states"] == {"SUCCESS": run["jobs"]}, name
        assert run["clients"]["poll_errors"] == 0 and run["clients"]["streams_unfinished"] == 0, name
        assert run["pipeline_calls"] is not None, f"{name}: no 'pipeline call' lines in {run['log']}"
    ratios = {item["name"]: item for item in report["ratios"]}
    for name in (
        "optimized-b1 / eager-b1 jobs/s",
        "system-b1 / optimized-b1 jobs/s",
        "system-bN / optimized-bN jobs/s",
        "system-bN / eager-b1 jobs/s",
    ):
        assert ratios[name]["value"] > 0, name
        assert ratios[name]["met"] is None, f"{name}: a smoke run judges nothing"
    assert ratios["system-b1 pipeline call / bare call (median, batch 1)"]["value"] > 0
    assert report["gpu"]["sampled"] is False
    assert report["flops_per_image"] > 0
    assert report["host"]["device"] == "cpu"
