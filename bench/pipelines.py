"""Jobs/s per task type through the whole system against the bare pipeline, same run.

Whole system: POST /api/v1/tasks in-process, the stub broker, one in-process worker
thread, claim -> start -> fetch inputs -> pipeline -> store -> SUCCESS in SQLite; timed
from the first submit until the last job is SUCCESS. Bare: the same loaded pipeline's
run() called in a loop on already-decoded inputs. Rounds alternate (bare, system, bare,
system) and the better round of each counts, since these machines are noisy.

    python bench/pipelines.py [--jobs-scale 1.0]

Uses a throwaway SQLite database and media folder; builds the demo models under
MODELS_DIR (var/models) if missing. Prints figures; never a test.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BACKSERV_VAR_DIR", tempfile.mkdtemp(prefix="backserv-bench-"))
os.environ.setdefault("MODELS_DIR", str(ROOT / "var" / "models"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backserv_site.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["BROKER_URL"] = ""  # the in-process stub broker
# A benchmark submits far past any client's rate limit.
os.environ.setdefault("RATE_LIMIT_DEFAULT", "10000000/min")
os.environ.setdefault("RATE_LIMIT_TASK_CREATE", "10000000/min")

import django  # noqa: E402

django.setup()

import dramatiq  # noqa: E402
import numpy as np  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from PIL import Image  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from accounts.models import User  # noqa: E402
from accounts.services import api_token_create  # noqa: E402
from generation.inputs import resolve_images  # noqa: E402
from generation.models_cache import pipeline_cache  # noqa: E402
from generation.specs import task_type_spec, validate_params  # noqa: E402
from tasks.models import TERMINAL_STATES, Task, TaskState  # noqa: E402


def _png_data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _noise(width: int, height: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))


def cases() -> list[tuple[str, str, dict[str, Any], int]]:
    """(label, task type, params, jobs per round)."""
    image64 = _png_data_uri(_noise(64, 64))
    found = [
        (
            "text-to-image 64px 10 steps",
            "image_creation",
            {"prompt": "a red fox", "width": 64, "height": 64, "steps": 10, "seed": 1},
            24,
        ),
        (
            "image-to-image 64px 10 steps s=0.8",
            "image_to_image",
            {"image": image64, "prompt": "fox", "steps": 10, "strength": 0.8, "seed": 1},
            16,
        ),
        (
            "upscale 2x diffusion 32px 10 steps",
            "image_upscale",
            {"image": _png_data_uri(_noise(32, 32)), "scale_factor": 2, "steps": 10, "seed": 1},
            12,
        ),
        (
            "upscale 4x diffusion 32px 10 steps",
            "image_upscale",
            {"image": _png_data_uri(_noise(32, 32)), "scale_factor": 4, "steps": 10, "seed": 1},
            8,
        ),
        ("upscale 4x lanczos 64px", "image_upscale", {"image": image64, "scale_factor": 4, "method": "lanczos"}, 40),
        (
            "video 8 frames 64px 10 steps",
            "video_creation",
            {"prompt": "waves", "duration": 1, "fps": 8, "width": 64, "height": 64, "steps": 10, "seed": 1},
            8,
        ),
    ]
    try:
        import skimage

        astronaut = Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png").convert("RGB")
        mirrored = Image.fromarray(np.ascontiguousarray(np.asarray(astronaut)[:, ::-1]))
        faces = {"source_image": _png_data_uri(mirrored), "target_image": _png_data_uri(astronaut)}
        found.append(("face swap 512px", "face_swap", faces, 12))
    except ImportError:
        print("scikit-image is not installed: no face photo, face swap skipped")
    return found


# Rates measured by the bare loop, which runs as an actor on the worker's own thread:
# torch's CPU thread pool belongs to the thread that calls it, and two pools (the main
# thread's and the worker's) would spin against each other on a small machine.
_bare_rates: list[float] = []


@dramatiq.actor(actor_name="bench_bare_loop", queue_name=settings.BACKSERV["QUEUE_NAME"], max_retries=0)
def bare_loop(task_type: str, params: dict[str, Any], jobs: int, owner_id: int) -> None:
    spec = task_type_spec(task_type)
    resolved = resolve_images(
        task=Task(owner_id=owner_id, task_type=task_type), params=params, fields=spec.image_fields
    )
    module = importlib.import_module(spec.pipeline_module)
    started = time.perf_counter()
    for _ in range(jobs):
        with pipeline_cache().use(spec, params) as pipeline:
            module.run(pipeline, resolved, lambda step, total: None)
    _bare_rates.append(jobs / (time.perf_counter() - started))


class Bench:
    def __init__(self, owner: User, broker: dramatiq.Broker):
        self.owner = owner
        self.broker = broker
        self.client = APIClient(SERVER_NAME="localhost")
        self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=owner, name='bench').secret}")

    def bare(self, task_type: str, params: dict[str, Any], jobs: int) -> float:
        clean = validate_params(task_type=task_type, params=params, owner=self.owner)
        bare_loop.send(task_type, clean, jobs, self.owner.pk)
        self.broker.join(settings.BACKSERV["QUEUE_NAME"], fail_fast=True)
        return _bare_rates.pop()

    def system(self, task_type: str, params: dict[str, Any], jobs: int) -> float:
        started = time.perf_counter()
        ids = []
        for _ in range(jobs):
            response = self.client.post("/api/v1/tasks", {"task_type": task_type, "params": params}, format="json")
            assert response.status_code == 202, response.content
            ids.append(response.json()["task_id"])
        # A slow poll: on a small machine a busy one would take CPU from the worker it measures.
        while Task.objects.filter(pk__in=ids).exclude(state__in=TERMINAL_STATES).exists():
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        failed = Task.objects.filter(pk__in=ids).exclude(state=TaskState.SUCCESS).first()
        assert failed is None, f"{failed.pk} ended {failed.state}: {failed.error_code} {failed.error_message}"
        return jobs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs-scale", type=float, default=1.0, help="multiply every case's job count")
    parser.add_argument("--rounds", type=int, default=2, help="bare/system rounds per case; the best of each counts")
    parser.add_argument("--only", default="", help="run only the cases whose label contains this")
    arguments = parser.parse_args()

    call_command("migrate", verbosity=0)
    from generation.demo_models import build_demo_models

    build_demo_models(Path(settings.GENERATION["MODELS_DIR"]))
    import generation.actors  # noqa: F401  (registers the actor)

    broker = dramatiq.get_broker()
    broker.emit_after("process_boot")
    # One thread, like the bare loop: the ratio is the system's overhead, not parallelism.
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=10)
    worker.start()
    owner, _ = User.objects.get_or_create(username="bench")
    bench = Bench(owner, broker)
    print(f"device: {settings.GENERATION['DEVICE'] or 'auto'}; torch threads: {_torch_threads()}")
    print(f"{'case':38} {'jobs':>4} {'bare/s':>8} {'system/s':>9} {'ratio':>6}")
    try:
        for label, task_type, params, jobs in cases():
            if arguments.only not in label:
                continue
            jobs = max(2, round(jobs * arguments.jobs_scale))
            bench.bare(task_type, params, 1)  # load and warm up
            bare_rates, system_rates = [], []
            for _ in range(arguments.rounds):
                bare_rates.append(bench.bare(task_type, params, jobs))
                system_rates.append(bench.system(task_type, params, jobs))
            bare_rate, system_rate = max(bare_rates), max(system_rates)
            print(f"{label:38} {jobs:>4} {bare_rate:>8.2f} {system_rate:>9.2f} {system_rate / bare_rate:>6.2f}")
    finally:
        worker.stop()


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
