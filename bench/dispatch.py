"""Submit → STARTED latency on an idle worker (Postgres + Redis, the fleet shape).

One job at a time, each submitted only once the worker has finished the one before
and sat idle for a moment, so every figure is a cold dispatch to a waiting worker:
HTTP submit, the INSERT, the broker message, the worker's fetch, the claim, the start.
Measured from the job's submitted_at (written by the API) to its started_at (written
by the worker), both on this machine's clock. Target: p50 < 20 ms.

    python bench/dispatch.py [--jobs 60] [--idle 0.3]

DATABASE_URL and BROKER_URL default to a bench database and Redis DB 9 on localhost.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet import Fleet, setup_django

TARGET_P50_MS = 20.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--idle", type=float, default=0.3, help="seconds the worker sits idle before each submit")
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    setup_django()
    from tasks.models import Task

    with Fleet() as fleet:
        print(f"broker: {fleet.env['BROKER_URL']}; {options.jobs} jobs a round, one at a time")
        print(f"{'round':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        medians = []
        for round_number in range(1, options.rounds + 1):
            latencies = []
            for _ in range(options.jobs):
                time.sleep(options.idle)
                task_id = fleet.submit(steps=1)["task_id"]
                fleet.wait_finished([task_id], poll=0.01)
                task = Task.objects.get(pk=task_id)
                latencies.append((task.started_at - task.submitted_at).total_seconds() * 1000)
            p50 = statistics.median(latencies)
            medians.append(p50)
            print(f"{round_number:>5} {p50:8.1f} {percentile(latencies, 0.99):8.1f} {max(latencies):8.1f}")
    ordered = sorted(medians)
    verdict = "ok" if ordered[len(ordered) // 2] < TARGET_P50_MS else "OVER"
    print(
        f"p50 min/median/max over rounds: {ordered[0]:.1f} / {ordered[len(ordered) // 2]:.1f} / {ordered[-1]:.1f} ms"
        f"  target < {TARGET_P50_MS:.0f} ms: {verdict}"
    )


if __name__ == "__main__":
    main()
