"""Jobs/s through the whole system against the bare pipeline in a loop, same run.

Whole system: HTTP submit to the API under uvicorn → Postgres → Redis → one
`rundramatiq` worker process (one thread) → SUCCESS, timed from the first job's
submitted_at to the last one's completed_at. Bare: the same tiny model's pipeline
called in a loop in this process, on the same params and torch threads, while the
worker sits idle.
Rounds alternate bare and system; the ratio of each round is printed, then
min / median / max over the rounds.

    python bench/overhead.py             # batching off (DYNAMIC_BATCH_SIZE=1): the
                                         # system's own overhead. Target ratio >= 0.9
    python bench/overhead.py --burst     # 32 jobs queued at once (one POST
                                         # /api/v1/tasks/batch), batching on (the default
                                         # 4), vs the unbatched bare loop. Target >= 2
    python bench/overhead.py --batching  # one submit after another with batching on,
                                         # as shipped, vs the same unbatched bare loop

DATABASE_URL and BROKER_URL default to a bench database and Redis DB 9 on localhost.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet import Fleet, setup_django, spread

PARAMS = {"prompt": "a red fox", "width": 64, "height": 64, "steps": 10}


def bare_rate(jobs: int) -> float:
    """The pipeline alone: load once, then `jobs` calls, each with its own seed."""
    from django.conf import settings

    from generation.models_cache import device_and_dtype, model_path
    from generation.pipelines import image_creation
    from generation.specs import validate_params

    global _pipeline
    if _pipeline is None:
        device, dtype = device_and_dtype()
        _pipeline = image_creation.load(model_path("image_creation"), device, dtype)
        assert settings.GENERATION["MODELS"]["image_creation"]
    params = [
        validate_params(task_type="image_creation", params={**PARAMS, "seed": seed}, owner=None) for seed in range(jobs)
    ]
    started = time.perf_counter()
    for job in params:
        image_creation.run(_pipeline, job, lambda step, total: None)
    return jobs / (time.perf_counter() - started)


_pipeline: Any = None


def system_rate(fleet: Fleet, jobs: int, *, at_once: bool) -> tuple[float, str]:
    """Jobs/s from the first submit to the last completion, and where the time went.
    `at_once`: every job queued by one batch request; else one HTTP submit after
    another, as clients trickle in."""
    if at_once:
        ids = fleet.submit_batch([{**PARAMS, "seed": seed} for seed in range(jobs)])
    else:
        ids = [fleet.submit(**PARAMS, seed=seed)["task_id"] for seed in range(jobs)]
    tasks = fleet.wait_finished(ids)
    first = min(task.submitted_at for task in tasks)
    last = max(task.completed_at for task in tasks)
    return jobs / (last - first).total_seconds(), breakdown(tasks)


def breakdown(tasks: list[Any]) -> str:
    """The first run's length, the median run's (started to completed: the pipeline
    call, storing the image, the success's write), and the median gap between one
    run's end and the next one's start. A batch's jobs share one run."""
    runs = sorted({(task.started_at, task.completed_at) for task in tasks})
    lengths = [(end - start).total_seconds() * 1000 for start, end in runs]
    gaps = sorted((start - end).total_seconds() * 1000 for (_, end), (start, _) in itertools.pairwise(runs))
    median_run = sorted(lengths)[len(lengths) // 2]
    median_gap = gaps[len(gaps) // 2] if gaps else 0.0
    return f"first run {lengths[0]:.0f} ms, median run {median_run:.0f} ms, gap {median_gap:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="32 jobs at once with batching on")
    parser.add_argument(
        "--batching", action="store_true", help="one submit after another, batching on (the shipped default)"
    )
    parser.add_argument("--jobs", type=int, default=None, help="jobs per round (24; 32 with --burst)")
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    jobs = options.jobs or (32 if options.burst else 24)
    setup_django()
    batching = options.burst or options.batching
    worker_env = {} if batching else {"DYNAMIC_BATCH_SIZE": "1"}
    mode = ("burst" if options.burst else "one submit after another") + (
        ", batching on" if batching else ", batching off"
    )
    target = 2.0 if options.burst else 0.9
    with Fleet(worker_env=worker_env) as fleet:
        bare_rate(1)  # load and warm up
        import torch

        print(f"text-to-image 64x64, 10 steps; {jobs} jobs a round; {mode}")
        # The bare loop sets torch up as a worker does (generation.models_cache).
        print(f"torch threads, bare loop and worker: {torch.get_num_threads()} (GENERATION_CPU_THREADS)")
        print(f"{'round':>5} {'bare/s':>8} {'system/s':>9} {'ratio':>6}")
        ratios = []
        for round_number in range(1, options.rounds + 1):
            bare = bare_rate(jobs)
            system, where = system_rate(fleet, jobs, at_once=options.burst)
            ratios.append(system / bare)
            print(f"{round_number:>5} {bare:8.2f} {system:9.2f} {system / bare:6.2f}   {where}")
    median = sorted(ratios)[len(ratios) // 2]
    verdict = "ok" if median >= target else "UNDER"
    print(f"ratio min / median / max: {spread(ratios)}  target >= {target}: {verdict}")


if __name__ == "__main__":
    main()
