"""Text-to-video with AnimateDiff (a motion adapter over a Stable Diffusion UNet),
encoded in-process to H.264 in yuv420p, the mp4 every browser plays."""

from __future__ import annotations

import io
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generation.pipelines.base import Output, StepCallback, diffusers_step_end, load_diffusers

if TYPE_CHECKING:
    import torch
    from diffusers import AnimateDiffPipeline
    from PIL.Image import Image


def load(model_dir: Path, device: str, dtype: torch.dtype) -> AnimateDiffPipeline:
    from diffusers import AnimateDiffPipeline

    return load_diffusers(AnimateDiffPipeline, model_dir, device, dtype)


def run(
    pipeline: AnimateDiffPipeline, params: dict[str, Any], on_step: StepCallback
) -> tuple[list[Output], dict[str, Any]]:
    import torch

    seed = int(params["seed"])
    fps = int(params["fps"])
    frame_count = int(params["duration"]) * fps
    width, height = int(params["width"]), int(params["height"])
    result = pipeline(
        prompt=params["prompt"],
        negative_prompt=params.get("negative_prompt"),
        num_frames=frame_count,
        width=width,
        height=height,
        num_inference_steps=int(params["steps"]),
        guidance_scale=float(params["guidance_scale"]),
        generator=torch.Generator(device="cpu").manual_seed(seed),
        output_type="pil",
        callback_on_step_end=diffusers_step_end(on_step),
    )
    frames: list[Image] = result.frames[0]
    video = Output(
        encode=partial(encode_mp4, frames, fps),
        content_type="video/mp4",
        extension="mp4",
        width=width,
        height=height,
    )
    metadata = {
        "seed": seed,
        "duration": frame_count / fps,
        "fps": fps,
        "frames": len(frames),
        "width": width,
        "height": height,
    }
    return [video], metadata


def encode_mp4(frames: list[Image], fps: int) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        # One x264 thread and no macroblock-tree rate control: with either, the bytes vary
        # from run to run (measured here) and a seed would no longer reproduce the file.
        stream.options = {"crf": "20", "preset": "medium", "threads": "1", "x264-params": "mbtree=0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_image(frame)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()
