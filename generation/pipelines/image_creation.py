"""Text-to-image with a Stable Diffusion pipeline."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generation.pipelines.base import Output, StepCallback

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline
    from PIL.Image import Image


def load(model_dir: Path, device: str, dtype: torch.dtype) -> StableDiffusionPipeline:
    # Imported here so that importing this module stays cheap for the web process.
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import is_accelerate_available

    pipeline = StableDiffusionPipeline.from_pretrained(
        model_dir,
        local_files_only=True,
        # diffusers 0.42 deprecates torch_dtype in favour of dtype.
        dtype=dtype,
        # Asking for low-memory loading without accelerate only logs a warning on every load.
        low_cpu_mem_usage=is_accelerate_available(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).to(device)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def run(
    pipeline: StableDiffusionPipeline, params: dict[str, Any], on_step: StepCallback
) -> tuple[list[Output], dict[str, Any]]:
    import torch

    seed = int(params["seed"])
    steps = int(params["steps"])

    def report_step(
        _pipeline: StableDiffusionPipeline,
        step_index: int,
        _timestep: torch.Tensor,
        callback_kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        on_step(step_index + 1, steps)
        return callback_kwargs

    # A CPU generator gives the same noise whatever the device, so a seed reproduces an image.
    generator = torch.Generator(device="cpu").manual_seed(seed)
    result = pipeline(
        prompt=params["prompt"],
        negative_prompt=params.get("negative_prompt"),
        width=int(params["width"]),
        height=int(params["height"]),
        num_inference_steps=steps,
        guidance_scale=float(params["guidance_scale"]),
        num_images_per_prompt=int(params.get("num_images", 1)),
        generator=generator,
        output_type="pil",
        callback_on_step_end=report_step,
    )
    outputs = [_encode_png(image) for image in result.images]
    return outputs, {"seed": seed}


def _encode_png(image: Image) -> Output:
    buffer = io.BytesIO()
    # No pnginfo and a fixed compression level keep the bytes a pure function of the pixels.
    image.save(buffer, format="PNG", compress_level=6)
    return Output(
        data=buffer.getvalue(),
        content_type="image/png",
        extension="png",
        width=image.width,
        height=image.height,
    )
