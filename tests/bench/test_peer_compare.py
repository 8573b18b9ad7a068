"""bench/peer/compare.py: its arguments and summary always; its smoke run, which starts
both stacks, only where the peer's own virtualenv exists (bench/peer/setup.sh makes it:
the suite never installs a second stack)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
from pathlib import Path
from types import ModuleType

import pytest
from django.conf import settings

from tests.bench.smoke import run_smoke

ROOT = Path(settings.BASE_DIR)
PEER_DIR = ROOT / "bench" / "peer"
# The suite's own services stay out of the bench's processes: with them it would clear
# the suite's database and queues.
SERVICE_VARS = ("DATABASE_URL", "BROKER_URL", "CACHE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")


def compare_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("peer_compare", PEER_DIR / "compare.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)", line.strip())
        if match:
            found[match.group(1).lower()] = match.group(3)
    return found


def test_it_defaults_to_three_rounds_of_32_clients_and_48_jobs() -> None:
    options = compare_module().parse_arguments([])
    assert (options.rounds, options.clients, options.jobs, options.seconds) == (3, 32, 48, 5.0)
    assert options.threads == max(len(os.sched_getaffinity(0)) - 1, 1)
    assert options.json is None and not options.smoke


def test_its_smoke_mode_runs_one_short_round_of_everything() -> None:
    options = compare_module().parse_arguments(["--smoke", "--jobs", "100", "--threads", "2"])
    assert (options.rounds, options.seconds, options.jobs, options.dispatch_jobs) == (1, 1.0, 4, 3)
    assert options.threads == 2


@pytest.mark.parametrize("argument", ["--rounds", "--clients", "--jobs", "--dispatch-jobs"])
def test_it_refuses_a_count_under_one(argument: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        compare_module().parse_arguments([argument, "0"])
    assert f"{argument} must be at least 1" in capsys.readouterr().err


def test_its_summary_is_each_sides_spread_and_the_ratio_of_medians() -> None:
    summary = compare_module().summarize(
        {"peer": [210.0, 198.0, 205.0], "backserv": [51.0, 60.0, 58.0]}, unit="req/s", better="higher", what="submit"
    )
    assert summary["peer"] == {"rounds": [210.0, 198.0, 205.0], "min": 198.0, "median": 205.0, "max": 210.0}
    assert (summary["backserv"]["min"], summary["backserv"]["median"], summary["backserv"]["max"]) == (51, 58, 60)
    assert summary["ratio"] == pytest.approx(58 / 205)
    assert summary["round_ratios"]["rounds"] == pytest.approx([51 / 210, 60 / 198, 58 / 205])
    assert summary["round_ratios"]["median"] == pytest.approx(58 / 205)


def test_its_report_names_every_case_and_which_way_is_better() -> None:
    compare = compare_module()
    options = compare.parse_arguments(["--clients", "8", "--jobs", "12"])
    figures = {name: {"peer": [2.0, 4.0], "backserv": [1.0, 3.0]} for name in compare.CASES}
    report = compare.report(figures, options, hostname="here")
    assert list(report["cases"]) == ["submit", "status", "e2e", "dispatch", "e2e-batching"]
    assert report["cases"]["submit"]["what"] == "POST a job, 8 clients"
    assert report["cases"]["e2e"]["what"].startswith("12 jobs end to end")
    assert report["cases"]["dispatch"]["ratio"] == pytest.approx(2 / 3)
    assert report["host"] == {"hostname": "here"}
    json.dumps(report)  # what --json writes
    lines = compare.summary_lines(report["cases"])
    assert [line for line in lines if "lower is better" in line] == [next(line for line in lines if "dispatch" in line)]


def test_the_peer_runs_the_projects_model_libraries_and_asgi_server() -> None:
    """Same tiny model, same libraries: a pin moved in requirements/ moves here too."""
    peer = pins(PEER_DIR / "requirements.txt")
    project = pins(ROOT / "requirements" / "worker.txt") | pins(ROOT / "requirements" / "base.txt")
    for package in ("torch", "diffusers", "transformers", "tokenizers", "safetensors", "numpy", "pillow", "uvicorn"):
        assert peer[package] == project[package], package
    for package in ("fastapi", "pydantic", "celery", "sqlalchemy", "psycopg"):
        assert package in peer, package
    assert "django" not in peer and "dramatiq" not in peer


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_the_smoke_run_measures_both_stacks(tmp_path: Path) -> None:
    if not (PEER_DIR / ".venv" / "bin" / "python").exists():
        pytest.skip("bench/peer/.venv is missing: bench/peer/setup.sh installs the peer's stack, the suite does not")
    if not (_listening(5432) and _listening(6379)):
        pytest.skip("the smoke run needs Postgres (5432) and Redis (6379) on 127.0.0.1")
    out = tmp_path / "peer.json"
    env = {key: value for key, value in os.environ.items() if key not in SERVICE_VARS}
    # Databases and Redis DBs of this test's own: a bench run beside it keeps its own.
    env.update(
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/backserv_bench_peer_smoke",
        BROKER_URL="redis://127.0.0.1:6379/11",
        PEER_DATABASE_URL="postgres://postgres@127.0.0.1:5432/backserv_peer_smoke",
        PEER_BROKER_URL="redis://127.0.0.1:6379/12",
    )
    output = run_smoke("bench/peer/compare.py", "--smoke", "--json", str(out), env=env, timeout=480)

    report = json.loads(out.read_text())
    assert list(report["cases"]) == ["submit", "status", "e2e", "dispatch", "e2e-batching"]
    for name, case in report["cases"].items():
        for side in ("peer", "backserv"):
            assert len(case[side]["rounds"]) == 1, (name, side)
            assert case[side]["median"] > 0, (name, side)
        assert case["ratio"] > 0, name
    assert report["options"]["smoke"] is True
    assert "Back.Serv / peer" in output
