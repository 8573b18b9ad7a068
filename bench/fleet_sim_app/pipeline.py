"""A simulated GPU, as text-to-image's pipeline module: a call sleeps FLEET_SIM_PIPELINE_MS
(spread over the job's steps, the step callback called after each as diffusers calls it)
and returns an 8x8 image per job. Everything around the call (claim, start, the step
checks, progress, storage, success, routing) is the real worker's.

Each job's metadata (and so its result) says when its call began and ended and on which
thread, so bench/fleet_sim.py can tell how long each simulated GPU sat idle between two
calls. Steps are timed from the call's start, not one after another: like kernels queued
on a GPU, a slow step check is absorbed by the next steps unless it outlasts them."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.pipelines.base import Output, StepCallback, encode_png


@dataclass(frozen=True)
class SimulatedGpu:
    seconds_per_call: float


def load(model_dir: Path | None, device: str, dtype: Any) -> SimulatedGpu:
    return SimulatedGpu(seconds_per_call=float(os.environ.get("FLEET_SIM_PIPELINE_MS", "500")) / 1000)


def run(pipeline: SimulatedGpu, params: dict[str, Any], on_step: StepCallback) -> tuple[list[Output], dict[str, Any]]:
    return run_batch(pipeline, [params], on_step)[0]


def run_batch(
    pipeline: SimulatedGpu, jobs: list[dict[str, Any]], on_step: StepCallback
) -> list[tuple[list[Output], dict[str, Any]]]:
    from PIL import Image

    steps = int(jobs[0]["steps"])
    began = time.time()
    for step in range(1, steps + 1):
        time.sleep(max(0.0, began + pipeline.seconds_per_call * step / steps - time.time()))
        on_step(step, steps)
    call = {"pid": os.getpid(), "thread": threading.get_ident(), "began": began, "ended": time.time()}
    return [
        ([encode_png(Image.new("RGB", (8, 8), (200, 80, 40)))], {"seed": params["seed"], "simulated_call": call})
        for params in jobs
    ]
