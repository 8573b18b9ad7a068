from __future__ import annotations

import dataclasses
import itertools
import threading
from typing import Any

from django.apps import AppConfig

_gpu_numbers = itertools.count()
_this_thread = threading.local()


def gpu_of_this_thread(params: dict[str, Any]) -> str:
    """The model a job runs on: its worker thread's own simulated GPU. The model cache
    lets one job at a time use a loaded model, as a GPU runs one call at a time; with a
    model per thread, a process of T threads is T GPUs, each running its own jobs, as T
    processes of one GPU each are in production."""
    if not hasattr(_this_thread, "gpu"):
        _this_thread.gpu = f"simulated_gpu_{next(_gpu_numbers)}"
    return _this_thread.gpu


class FleetSimConfig(AppConfig):
    name = "fleet_sim_app"
    verbose_name = "Fleet simulation (bench only)"

    def ready(self) -> None:
        from generation.specs import TASK_TYPES

        # In place: the jobs layer was given this very dict by generation's ready(), and
        # the runner and the model cache read the spec from it for every job.
        TASK_TYPES["image_creation"] = dataclasses.replace(
            TASK_TYPES["image_creation"], pipeline_module="fleet_sim_app.pipeline", model_for=gpu_of_this_thread
        )
