"""Text-to-image with a Stable Diffusion pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from generation.pipelines.base import Output, StepCallback, diffusers_step_end, encode_png, load_diffusers

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline


def load(model_dir: Path, device: str, dtype: torch.dtype) -> StableDiffusionPipeline:
    # Imported here so that importing this module stays cheap for the web process.
    from diffusers import StableDiffusionPipeline

    return load_diffusers(
        StableDiffusionPipeline,
        model_dir,
        device,
        dtype,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def run(
    pipeline: StableDiffusionPipeline, params: dict[str, Any], on_step: StepCallback
) -> tuple[list[Output], dict[str, Any]]:
    seed = int(params["seed"])
    result = pipeline(
        prompt=params["prompt"],
        negative_prompt=params.get("negative_prompt"),
        num_images_per_prompt=int(params.get("num_images", 1)),
        generator=_generator(seed),
        **_shared_arguments(params, on_step),
    )
    return [encode_png(image) for image in result.images], {"seed": seed}


def run_batch(
    pipeline: StableDiffusionPipeline, jobs: list[dict[str, Any]], on_step: StepCallback
) -> list[tuple[list[Output], dict[str, Any]]]:
    """Jobs of one batch key (same size, steps and guidance, one image each) as one
    call. Each has its own prompt and its own seeded generator, so each gets the image
    it would get alone."""
    seeds = [int(params["seed"]) for params in jobs]
    result = pipeline(
        prompt=[params["prompt"] for params in jobs],
        # A job without one has "", which is what the pipeline uses alone.
        negative_prompt=[params.get("negative_prompt") or "" for params in jobs],
        generator=[_generator(seed) for seed in seeds],
        **_shared_arguments(jobs[0], on_step),
    )
    return [([encode_png(image)], {"seed": seed}) for image, seed in zip(result.images, seeds, strict=True)]


def warm_up(pipeline: StableDiffusionPipeline, batch_sizes: list[int]) -> None:
    """A one-step call at the default size for each batch size: what a call of that
    shape captures happens here, before the first job. Its images are never encoded."""
    from generation.specs import validate_params

    params = validate_params(task_type="image_creation", params={"prompt": "warm-up", "steps": 1}, owner=None)
    for size in batch_sizes:
        jobs = [{**params, "seed": seed} for seed in range(size)]
        if size == 1:
            run(pipeline, jobs[0], _ignore_step)
        else:
            run_batch(pipeline, jobs, _ignore_step)


def _ignore_step(step: int, total: int) -> None:
    pass


def _generator(seed: int) -> torch.Generator:
    import torch

    # A CPU generator gives the same noise whatever the device, so a seed reproduces an image.
    return torch.Generator(device="cpu").manual_seed(seed)


def _shared_arguments(params: dict[str, Any], on_step: StepCallback) -> dict[str, Any]:
    return {
        "width": int(params["width"]),
        "height": int(params["height"]),
        "num_inference_steps": int(params["steps"]),
        "guidance_scale": float(params["guidance_scale"]),
        "output_type": "pil",
        "callback_on_step_end": diffusers_step_end(on_step),
    }
