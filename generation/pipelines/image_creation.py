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
    import torch

    seed = int(params["seed"])
    # A CPU generator gives the same noise whatever the device, so a seed reproduces an image.
    generator = torch.Generator(device="cpu").manual_seed(seed)
    result = pipeline(
        prompt=params["prompt"],
        negative_prompt=params.get("negative_prompt"),
        width=int(params["width"]),
        height=int(params["height"]),
        num_inference_steps=int(params["steps"]),
        guidance_scale=float(params["guidance_scale"]),
        num_images_per_prompt=int(params.get("num_images", 1)),
        generator=generator,
        output_type="pil",
        callback_on_step_end=diffusers_step_end(on_step),
    )
    outputs = [encode_png(image) for image in result.images]
    return outputs, {"seed": seed}
