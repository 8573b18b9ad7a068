"""The subprocess side: what bench/gpu.py does when started with --child (probe the host,
build the model folder, time the bare loop), how the bench starts such a child and
reads its answer, and the SD-1.5-sized random-weight pipeline it builds."""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gpu_cases import SD15_FOLDER
from gpu_processes import ROOT, StepFailed, kill_group, tail

# The children are bench/gpu.py itself, run with --child.
ENTRY_POINT = Path(__file__).resolve().with_name("gpu.py")
# The line a child process answers on; everything else it prints is its log.
RESULT_MARKER = "@@bench-gpu-result "
CHILD_TIMEOUT_S = 900


def run_child(kind: str, spec: dict[str, Any], *, env: dict[str, str], log: Path, work_dir: Path) -> dict[str, Any]:
    """Run bench/gpu.py as a child process (own process group: torch.compile's helpers
    die with it) and return its answer; raises with its log's tail if it fails."""
    spec_path = work_dir / f"{log.stem}.spec.json"
    spec_path.write_text(json.dumps(spec))
    command = [sys.executable, str(ENTRY_POINT), "--child", kind, "--spec", str(spec_path)]
    with log.open("wb") as handle:
        popen = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = popen.wait(CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            kill_group(popen.pid)
            popen.wait(30)
            raise StepFailed(f"{kind} timed out after {CHILD_TIMEOUT_S}s; log: {log}\n{tail(log)}") from None
        finally:
            kill_group(popen.pid)
    if code != 0:
        raise StepFailed(f"{kind} exited {code}; log: {log}\n{tail(log)}")
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    raise StepFailed(f"{kind} gave no result; log: {log}\n{tail(log)}")


def child_main(kind: str, spec_path: Path) -> None:
    """A subprocess's work: probe, build or bare. Its answer is one marked JSON line."""
    sys.path.insert(0, str(ROOT))
    spec = json.loads(spec_path.read_text())
    import django

    django.setup()
    work = {"probe": child_probe, "build": child_build, "bare": child_bare}[kind]
    print(RESULT_MARKER + json.dumps(work(spec)), flush=True)


def child_probe(spec: dict[str, Any]) -> dict[str, Any]:
    """The host as the worker sees it, and the batch size it would use."""
    import diffusers
    import torch

    from generation.models_cache import device_and_dtype

    device, dtype = device_and_dtype()
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu_name": None,
        "gpu_memory_gb": None,
    }
    if device.startswith("cuda"):
        properties = torch.cuda.get_device_properties(0)
        info.update(gpu_name=properties.name, gpu_memory_gb=round(properties.total_memory / 2**30, 1))
    info["batch_size"], info["batch_size_source"] = worker_batch_size()
    return info


def worker_batch_size() -> tuple[int, str]:
    try:
        from generation.acceleration import dynamic_batch_size

        return int(dynamic_batch_size()), "generation.acceleration.dynamic_batch_size()"
    except Exception as error:
        raw = os.environ.get("DYNAMIC_BATCH_SIZE", "4")
        try:
            value = max(1, int(raw))
        except ValueError:
            value = 4
        return value, f"DYNAMIC_BATCH_SIZE fallback ({value}): dynamic_batch_size() unavailable: {error}"


def child_build(spec: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    directory = Path(spec["dir"])
    if spec["model"] == "sd15":
        from generation.demo_models import _save_atomically

        directory.mkdir(parents=True, exist_ok=True)
        _save_atomically(directory / SD15_FOLDER, save_sd15_random)
    else:
        from generation.demo_models import build_demo_models

        build_demo_models(directory)
    return {"seconds": round(time.perf_counter() - started, 2)}


def save_sd15_random(output_dir: Path) -> None:
    """Stable Diffusion 1.5's architecture with random weights, in fp16 safetensors.
    Initialised on the GPU: the 860M-parameter UNet takes minutes to initialise on a CPU."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from generation.demo_models import _build_scheduler, _build_tokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=64,
            in_channels=4,
            out_channels=4,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=768,
            attention_head_dim=8,
        )
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=2,
            sample_size=512,
        )
        # The tiny tokenizer uses 514 of the 49408 rows: the shapes are what count.
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                hidden_size=768,
                intermediate_size=3072,
                num_attention_heads=12,
                num_hidden_layers=12,
                vocab_size=49408,
                max_position_embeddings=77,
                projection_dim=768,
                hidden_act="quick_gelu",
            )
        )
    # Written from host memory, module by module (a whole fp16 pipeline moved to the CPU
    # warns that it cannot run there): serialising from device tensors is up to versions.
    for model in (unet, vae, text_encoder):
        model.half().to("cpu")  # half(): ModelMixin.to(dtype) warns about nothing here
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=_build_tokenizer(),
        unet=unet,
        scheduler=_build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(output_dir)


def child_bare(spec: dict[str, Any]) -> dict[str, Any]:
    """The pipeline alone: loaded through the worker's pipeline cache (device, dtype,
    the heap settled after the load), then warm-up calls, then the timed calls."""
    import torch

    from generation.inputs import resolve_images
    from generation.models_cache import device_and_dtype, pipeline_cache
    from generation.specs import task_type_spec, validate_params
    from tasks.models import Task

    task_type = spec["task_type"]
    batch = int(spec["batch"])
    task_spec = task_type_spec(task_type)
    module = importlib.import_module(task_spec.pipeline_module)
    jobs = [validate_params(task_type=task_type, params=params, owner=None) for params in spec["params"]]
    # Inputs decoded once, outside the timing, as the worker does before it takes the model.
    inputs = [resolve_images(task=Task(task_type=task_type), params=job, fields=task_spec.image_fields) for job in jobs]
    groups = [inputs[start : start + batch] for start in range(0, len(inputs), batch)]
    device, dtype = device_and_dtype()
    cuda = device.startswith("cuda")
    encode = bool(spec.get("encode"))

    def no_progress(step: int, total: int) -> None:
        return None

    result: dict[str, Any] = {"device": device, "dtype": str(dtype).removeprefix("torch."), "batch": batch}
    result["encode"] = encode
    result["env"] = {key: value for key, value in os.environ.items() if key.startswith("GENERATION_")}
    started = time.perf_counter()
    with pipeline_cache().use(task_spec, jobs[0]) as pipeline:
        result["load_s"] = round(time.perf_counter() - started, 3)

        def call(group: list[dict[str, Any]]) -> None:
            if batch == 1:
                results = [module.run(pipeline, group[0], no_progress)]
            else:
                results = module.run_batch(pipeline, group, no_progress)
            if encode:
                for outputs, _metadata in results:
                    for output in outputs:
                        output.data  # noqa: B018  (reading it encodes the file)
            if cuda:
                # Done means the device is done, whatever form the outputs come back in.
                torch.cuda.synchronize()

        warmups = []
        for _ in range(int(spec["warmup"])):
            began = time.perf_counter()
            call(groups[0])
            warmups.append(round(time.perf_counter() - began, 4))
        result["warmup_s"] = warmups
        if spec.get("count_flops"):
            from torch.utils.flop_counter import FlopCounterMode

            with FlopCounterMode(display=False) as counter:
                call(groups[0])
            result["flops_per_call"] = counter.get_total_flops()
            result["flops_jobs"] = len(groups[0])
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        calls = []
        wall_start = time.time()
        timed_start = time.perf_counter()
        for group in groups:
            began = time.perf_counter()
            call(group)
            calls.append(time.perf_counter() - began)
        seconds = time.perf_counter() - timed_start
        wall_end = time.time()
    result.update(
        jobs=len(inputs),
        calls=len(calls),
        call_s=calls,
        seconds=seconds,
        span=[wall_start, wall_end],
        torch_peak_mb=round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None,
    )
    return result
