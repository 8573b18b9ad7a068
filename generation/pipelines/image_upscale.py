"""Upscaling by 2 or 4: a diffusion upscaler when one is configured (diffusers'
latent upscaler for 2x, the x4 upscaler for 4x) or Lanczos resampling. The output is
always exactly scale x the input size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

from generation.inputs import INPUT_TOO_LARGE
from generation.pipelines.base import Output, PipelineInputError, StepCallback, encode_png, load_diffusers

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

# model_index.json's class -> the upscale factor it gives.
_DIFFUSION_UPSCALERS = {
    "StableDiffusionLatentUpscalePipeline": 2,
    "StableDiffusionUpscalePipeline": 4,
}


def load(model_dir: Path | None, device: str, dtype: torch.dtype) -> Any:
    """None for Lanczos (no model); else the diffusers upscaler the folder holds."""
    if model_dir is None:
        return None
    import diffusers

    class_name = json.loads((model_dir / "model_index.json").read_text())["_class_name"]
    if class_name not in _DIFFUSION_UPSCALERS:
        raise LookupError(f"{model_dir} holds a {class_name}, not one of {', '.join(_DIFFUSION_UPSCALERS)}.")
    return load_diffusers(getattr(diffusers, class_name), model_dir, device, dtype)


def run(pipeline: Any, params: dict[str, Any], on_step: StepCallback) -> tuple[list[Output], dict[str, Any]]:
    from PIL import Image

    image: Image = params["image"]
    scale = int(params["scale_factor"])
    target = (image.width * scale, image.height * scale)
    limit = settings.GENERATION["MAX_UPSCALE_OUTPUT_PIXELS"]
    if target[0] * target[1] > limit:
        raise PipelineInputError(
            INPUT_TOO_LARGE, f"image: {image.width}x{image.height} x{scale} exceeds the limit of {limit} output pixels."
        )
    if pipeline is None:
        on_step(1, 1)
        return [encode_png(image.resize(target, Image.Resampling.LANCZOS))], {"method": "lanczos"}
    if _DIFFUSION_UPSCALERS[type(pipeline).__name__] != scale:
        raise LookupError(f"The model configured for {scale}x is a {type(pipeline).__name__}.")
    upscaled = _diffuse(pipeline, image, params, on_step)
    # The models work on blocks of pixels: an input whose sides are not multiples of the
    # block comes back a few pixels off, and the promise is exactly scale x the input.
    if upscaled.size != target:
        upscaled = upscaled.resize(target, Image.Resampling.LANCZOS)
    return [encode_png(upscaled)], {"method": "diffusion", "seed": int(params["seed"])}


def _diffuse(pipeline: Any, image: Image, params: dict[str, Any], on_step: StepCallback) -> Image:
    import torch

    steps = int(params["steps"])
    options: dict[str, Any] = {}
    if params.get("guidance_scale") is not None:
        options["guidance_scale"] = float(params["guidance_scale"])
    result = pipeline(
        prompt=params["prompt"],
        image=image,
        num_inference_steps=steps,
        generator=torch.Generator(device="cpu").manual_seed(int(params["seed"])),
        output_type="pil",
        # Both upscalers only take the older per-step callback.
        callback=lambda step_index, _timestep, _latents: on_step(step_index + 1, steps),
        callback_steps=1,
        **options,
    )
    return result.images[0]
