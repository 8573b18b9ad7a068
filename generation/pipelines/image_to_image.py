"""Image-to-image with a Stable Diffusion pipeline (the text-to-image weights serve)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

from generation.pipelines.base import Output, StepCallback, diffusers_step_end, encode_png, load_diffusers

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline
    from PIL.Image import Image

# The VAE works on 8x8 pixel blocks.
SIZE_MULTIPLE = 8


def load(model_dir: Path, device: str, dtype: torch.dtype) -> StableDiffusionImg2ImgPipeline:
    from diffusers import StableDiffusionImg2ImgPipeline

    return load_diffusers(
        StableDiffusionImg2ImgPipeline,
        model_dir,
        device,
        dtype,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def run(
    pipeline: StableDiffusionImg2ImgPipeline, params: dict[str, Any], on_step: StepCallback
) -> tuple[list[Output], dict[str, Any]]:
    import torch

    seed = int(params["seed"])
    steps = int(params["steps"])
    strength = float(params["strength"])
    image = _fit(params["image"])
    # Fewer than one denoising step: nothing would be redrawn, and diffusers cannot run zero.
    if int(steps * strength) < 1:
        return [encode_png(image)], {"seed": seed, "steps_run": 0}
    generator = torch.Generator(device="cpu").manual_seed(seed)
    result = pipeline(
        prompt=params["prompt"],
        negative_prompt=params.get("negative_prompt"),
        image=image,
        strength=strength,
        num_inference_steps=steps,
        guidance_scale=float(params["guidance_scale"]),
        generator=generator,
        output_type="pil",
        callback_on_step_end=diffusers_step_end(on_step),
    )
    return [encode_png(result.images[0])], {"seed": seed, "steps_run": pipeline.num_timesteps}


def _fit(image: Image) -> Image:
    """The input within the configured maximum size, each side a multiple of 8."""
    from PIL import Image

    limits = settings.GENERATION
    scale = min(1.0, limits["MAX_WIDTH"] / image.width, limits["MAX_HEIGHT"] / image.height)
    width = max(SIZE_MULTIPLE, int(image.width * scale) // SIZE_MULTIPLE * SIZE_MULTIPLE)
    height = max(SIZE_MULTIPLE, int(image.height * scale) // SIZE_MULTIPLE * SIZE_MULTIPLE)
    if (width, height) == image.size:
        return image
    return image.resize((width, height), Image.Resampling.LANCZOS)
