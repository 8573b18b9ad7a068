"""The peer's Celery 5 worker: one task, run a text-to-image job by its id.

    celery -A worker worker --pool solo --concurrency 1   # from bench/peer/

It loads the tiny Stable Diffusion folder Back.Serv's embedded default uses
(`manage.py make_demo_models` builds it under var/models/tiny-sd) with diffusers'
StableDiffusionPipeline on the CPU, with as many torch threads as Back.Serv's workers
take (its GENERATION_CPU_THREADS rule), once, when the worker is ready. The API imports
this module to send the task, so torch and diffusers are imported only in the worker.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_ready
from sqlalchemy import update
from store import Job, SessionLocal, now

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/8"
ROOT = Path(__file__).resolve().parent.parent.parent

celery = Celery("peer", broker=os.environ.get("PEER_BROKER_URL", DEFAULT_BROKER_URL))
celery.conf.update(
    # The jobs table is the record of each job: no result backend.
    task_ignore_result=True,
    # Acked once the job ran: a worker killed mid-job leaves its message for the next.
    task_acks_late=True,
    # One message at a time: a long job never hides another behind it in this worker.
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)

_pipeline: Any = None


def cpu_threads() -> int | None:
    """Back.Serv's rule (generation.models_cache.cpu_threads): PEER_CPU_THREADS, else one
    fewer than the cores (at least one), else torch's own choice where OMP_NUM_THREADS
    is set."""
    configured = int(os.environ.get("PEER_CPU_THREADS", "0"))
    if configured > 0:
        return configured
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return max(len(os.sched_getaffinity(0)) - 1, 1)


def pipeline() -> Any:
    global _pipeline
    if _pipeline is None:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        import diffusers.utils.logging
        import torch
        from diffusers import StableDiffusionPipeline

        # Celery logs what a worker prints: a progress bar would be a warning a line.
        diffusers.utils.logging.disable_progress_bar()
        threads = cpu_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        model_dir = os.environ.get("PEER_MODEL_DIR", str(ROOT / "var" / "models" / "tiny-sd"))
        _pipeline = StableDiffusionPipeline.from_pretrained(
            model_dir,
            local_files_only=True,
            # Without accelerate (not installed) asking for it only logs a warning.
            low_cpu_mem_usage=False,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        _pipeline.set_progress_bar_config(disable=True)
    return _pipeline


@worker_ready.connect
def load_model(**_: Any) -> None:
    """The model loads before the first message is taken, not in the first job."""
    pipeline()


@celery.task(name="peer.run_job")
def run_job(job_id: str) -> None:
    """Claims the job (PENDING -> STARTED in one conditional UPDATE, so a redelivered
    message runs nothing twice), runs it, writes its PNGs, and marks it finished."""
    key = uuid.UUID(job_id)
    with SessionLocal.begin() as session:
        claim = update(Job).where(Job.id == key, Job.state == "PENDING")
        params = session.scalar(claim.values(state="STARTED", started_at=now()).returning(Job.params))
    if params is None:
        return
    try:
        paths = generate(job_id, params)
    except Exception as error:
        finish(key, state="FAILURE", error=str(error))
        raise
    finish(key, state="SUCCESS", result={"images": paths, "seed": params["seed"]})


def finish(key: uuid.UUID, *, state: str, **values: Any) -> None:
    with SessionLocal.begin() as session:
        session.execute(update(Job).where(Job.id == key).values(state=state, completed_at=now(), **values))


def generate(job_id: str, params: dict[str, Any]) -> list[str]:
    """The images as PNG files, encoded as Back.Serv encodes them (compress level 6)."""
    import torch

    images = pipeline()(
        prompt=params["prompt"],
        negative_prompt=params["negative_prompt"],
        num_images_per_prompt=params["num_images"],
        width=params["width"],
        height=params["height"],
        num_inference_steps=params["steps"],
        guidance_scale=params["guidance_scale"],
        generator=torch.Generator(device="cpu").manual_seed(params["seed"]),
        output_type="pil",
    ).images
    output_dir = Path(os.environ.get("PEER_OUTPUT_DIR", Path(tempfile.gettempdir()) / "backserv-peer-outputs"))
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, image in enumerate(images):
        path = output_dir / f"{job_id}-{index}.png"
        image.save(path, format="PNG", compress_level=6)
        paths.append(str(path))
    return paths
