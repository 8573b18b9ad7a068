"""bench/fleet_sim.py's figures: one run's measures from its jobs' timestamps and the
simulated GPU calls their results record, the summary over runs (the knee), and the
table it prints."""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from typing import Any

# A point whose claims/s fall below this share of the ideal is past the knee.
KNEE_EFFICIENCY = 0.9


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _spread(values: list[float]) -> dict[str, float | None]:
    p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
    return {"p50": round(p50, 1) if p50 is not None else None, "p99": round(p99, 1) if p99 is not None else None}


def steady_window(starts: list[float], *, every_gpu_busy: float, waiting_at_least: int) -> dict[str, Any]:
    """The claims made once every simulated GPU had begun computing its first job and
    while `waiting_at_least` jobs or more were still unclaimed, so no GPU lacked work.
    Too short a window (a point whose queue drained too soon) falls back to every claim."""
    first = next((index for index, start in enumerate(starts) if start >= every_gpu_busy), len(starts))
    last = len(starts) - 1 - waiting_at_least
    steady = last - first >= max(10, waiting_at_least // 4)
    if not steady:
        first, last = 0, len(starts) - 1
    seconds = max(starts[last] - starts[first], 1e-6)
    return {
        "start": starts[first],
        "end": starts[last],
        "seconds": round(seconds, 3),
        "claims": last - first,
        "steady": steady,
    }


def measure_run(
    rows: list[dict[str, Any]], *, threads: int, pipeline_ms: float, batch: int, queued: float
) -> dict[str, Any]:
    """Claims/s over the steady window against the ideal, and the simulated GPUs' waits:
    dispatch (a call's end to the next job's claim on the same thread) and the idle gap
    (to the next call's start), for the claims inside the window."""
    calls: dict[tuple[int, int, float], dict[str, float]] = {}
    for row in rows:
        call = row["result"]["simulated_call"]
        key = (call["pid"], call["thread"], call["began"])
        claimed = row["started_at"].timestamp()
        known = calls.setdefault(key, {"began": call["began"], "ended": call["ended"], "claimed": claimed})
        known["claimed"] = min(known["claimed"], claimed)
    by_thread: dict[tuple[int, int], list[dict[str, float]]] = defaultdict(list)
    for (pid, thread, _), call in calls.items():
        by_thread[(pid, thread)].append(call)
    # Computing, not only claimed: a thread's first job loads its simulated GPU first
    # (one thread at a time in a process, each load collecting the heap: 0.3 s).
    every_gpu_busy = max(min(call["began"] for call in thread_calls) for thread_calls in by_thread.values())
    starts = sorted(row["started_at"].timestamp() for row in rows)
    window = steady_window(starts, every_gpu_busy=max(every_gpu_busy, queued), waiting_at_least=threads * batch)
    claims_per_s = window["claims"] / window["seconds"]
    ideal = threads * batch / (pipeline_ms / 1000)
    dispatch, gaps, lengths = [], [], []

    def inside(call: dict[str, float]) -> bool:
        return window["start"] <= call["claimed"] <= window["end"]

    for thread_calls in by_thread.values():
        thread_calls.sort(key=lambda call: call["began"])
        lengths += [(call["ended"] - call["began"]) * 1000 for call in thread_calls if inside(call)]
        for before, after in itertools.pairwise(thread_calls):
            if inside(after):
                dispatch.append((after["claimed"] - before["ended"]) * 1000)
                gaps.append((after["began"] - before["ended"]) * 1000)
    last_completion = max(row["completed_at"] for row in rows).timestamp()
    return {
        "threads": threads,
        "jobs": len(rows),
        "simulated_calls": len(calls),
        "gpus_seen": len(by_thread),
        "window": window,
        "claims_per_s": round(claims_per_s, 2),
        "ideal_per_s": round(ideal, 2),
        "efficiency": round(claims_per_s / ideal, 3),
        # From the backlog's release to the last job's end, the drain's tail included.
        "jobs_per_s": round(len(rows) / (last_completion - queued), 2),
        "dispatch_ms": _spread(dispatch),
        "idle_gap_ms": _spread(gaps),
        "call_ms": _spread(lengths),
    }


def _median(runs: list[dict[str, Any]], *path: str) -> float | None:
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            values.append(value)
    return round(statistics.median(values), 3) if values else None


def summarize(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over each point's runs, and the knee: the last N whose claims kept up
    (efficiency >= KNEE_EFFICIENCY) before the first that did not, with what each part
    of the fleet took of the CPU there."""
    rows = []
    for point in points:
        runs = point["runs"]
        cpu_parts = sorted({name for run in runs for name in run["sampled"].get("cpu_cores", {})})
        rows.append(
            {
                "threads": point["threads"],
                "claims_per_s": _median(runs, "claims_per_s"),
                "efficiency": _median(runs, "efficiency"),
                "dispatch_p50_ms": _median(runs, "dispatch_ms", "p50"),
                "dispatch_p99_ms": _median(runs, "dispatch_ms", "p99"),
                "cpu_cores": {name: _median(runs, "sampled", "cpu_cores", name) for name in cpu_parts},
                "host_cores_busy": _median(runs, "sampled", "host_cores_busy"),
                "others_cores": _median(runs, "sampled", "others_cores"),
                "postgres_cpu_ms_per_job": _median(runs, "per_job", "cpu_ms", "postgres"),
                "workers_cpu_ms_per_job": _median(runs, "per_job", "cpu_ms", "workers"),
            }
        )
    return {"by_threads": rows, "knee": knee(rows)}


def knee(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the fleet stops keeping up: the first N whose claims fall below
    KNEE_EFFICIENCY of the ideal, and the ceiling the claims level off at (the highest
    median over the points) with the first N that reached 90% of it; with what each
    part of the fleet took of the CPU at that first N past the knee."""
    found: dict[str, Any] = {"threshold": KNEE_EFFICIENCY}
    if not rows:
        return {**found, "verdict": "no points"}
    ceiling = max(row["claims_per_s"] or 0 for row in rows)
    reached = next(row for row in rows if (row["claims_per_s"] or 0) >= 0.9 * ceiling)
    found.update(ceiling_claims_per_s=ceiling, ceiling_reached_at=reached["threads"])
    below = next((index for index, row in enumerate(rows) if (row["efficiency"] or 0) < KNEE_EFFICIENCY), None)
    if below is None:
        return {**found, "verdict": f"no knee: every N kept up (up to {ceiling} claims/s)"}
    past = rows[below]
    cores = {name: value for name, value in past["cpu_cores"].items() if value is not None}
    busiest = max(cores, key=lambda name: cores[name]) if cores else None
    found.update(
        last_kept_up=rows[below - 1]["threads"] if below else None,
        first_fell_behind=past["threads"],
        busiest_part=busiest,
        verdict=(
            f"efficiency first under {KNEE_EFFICIENCY} at N={past['threads']} ({past['efficiency']}), where the busiest"
            f" part was {busiest} ({cores.get(busiest or '', 0)} cores, host {past['host_cores_busy']});"
            f" claims level off at {ceiling}/s, 90% of it first reached at N={reached['threads']}"
        ),
    )
    return found


def _pair(spread: dict[str, Any]) -> str:
    if spread.get("p50") is None:
        return "-"
    return f"{spread['p50']:.0f}/{spread['p99']:.0f}"


def _cores(cores: dict[str, float], per_job_ms: dict[str, float], name: str) -> str:
    if name not in cores:
        return "-"
    return f"{cores[name]:.2f} [{per_job_ms.get(name, 0):.1f}]"


_COLUMNS = (
    ("N", 4),
    ("P x T", 8),
    ("jobs", 5),
    ("submit/s", 8),
    ("claims/s", 8),
    ("ideal", 5),
    ("eff", 5),
    ("disp ms", 10),
    ("gap ms", 10),
    ("call", 5),
    ("postgres", 12),
    ("workers", 12),
    ("api", 4),
    ("redis", 5),
    ("bench", 5),
    ("others", 6),
    ("host", 4),
    ("conns", 8),
    ("lockwait", 8),
    ("tx/job", 6),
)


def _row(run: dict[str, Any]) -> list[str]:
    sampled = run["sampled"]
    cores, ms = sampled.get("cpu_cores", {}), run["per_job"]["cpu_ms"]
    split = run["threads_per_process"]
    shape = f"{len(split)}x{split[0]}" if len(set(split)) == 1 else f"{len(split)}x{min(split)}-{max(split)}"
    connections, waits = sampled.get("connections", {}), sampled.get("lock_waits", {})
    return [
        str(run["threads"]),
        shape,
        str(run["jobs"]),
        f"{run['submit']['jobs_per_s']:.0f}",
        f"{run['claims_per_s']:.1f}",
        f"{run['ideal_per_s']:.0f}",
        f"{run['efficiency']:.2f}",
        _pair(run["dispatch_ms"]),
        _pair(run["idle_gap_ms"]),
        f"{run['call_ms']['p50'] or 0:.0f}",
        _cores(cores, ms, "postgres"),
        _cores(cores, ms, "workers"),
        f"{cores.get('api', 0):.2f}",
        f"{cores.get('redis', 0):.2f}",
        f"{cores.get('bench', 0):.2f}",
        f"{sampled.get('others_cores', 0):.2f}",
        f"{sampled.get('host_cores_busy', 0):.2f}",
        f"{connections.get('max', 0)}/{sampled.get('active', {}).get('mean', 0):.0f}",
        f"{waits.get('mean', 0):.1f}/{waits.get('max', 0)}",
        f"{run['per_job']['commits']:.1f}",
    ]


def print_table(report: dict[str, Any]) -> None:
    host = report["host"]
    print(f"\n{host['date']}, {host['cores']} cores, {host['platform']}; CPU in cores, [ms per job]")
    print(" ".join(f"{name:>{width}}" for name, width in _COLUMNS))
    for point in report["points"]:
        for run in point["runs"]:
            print(" ".join(f"{cell:>{width}}" for cell, (_, width) in zip(_row(run), _COLUMNS, strict=True)))
    print(
        "submit/s: the API queueing the backlog; disp: a GPU's call end -> its next claim, p50/p99; gap: -> its"
        " next call; call: the simulated call, p50 ms; conns: max / mean active; lockwait: sessions waiting on"
        " a lock, mean/max; tx/job: commits a job"
    )
    for ring in report.get("ring", []):
        read, submit = ring["lock_and_read_ms"], ring["submit_ms"]
        print(
            f"{ring['servers']:>5} servers registered: a routing pass's lock and read {read['p50']} ms p50"
            f" ({read['p90']} p90); a submit {submit['p50']} ms p50 ({submit['p90']} p90)"
        )
    print(report["summary"]["knee"]["verdict"])
