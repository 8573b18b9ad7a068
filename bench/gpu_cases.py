"""The bench's cases: each task type's model, job params and batching, as --type and
--smoke choose them, and the input pictures the image-taking types are sent."""

from __future__ import annotations

import argparse
import base64
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SD15_FOLDER = "sd15-random"
PROMPT = "a lighthouse on a cliff at dusk, oil painting"
TYPES = ("image_creation", "image_to_image", "image_upscale", "video_creation", "face_swap")


@dataclass
class Case:
    """One task type's comparison: its model, its jobs' params and how they batch."""

    task_type: str
    model: str  # "sd15", "tiny" or "none"
    model_folder: str | None  # under --models-dir
    model_env: list[str]  # the MODEL_* settings pointing at the folder
    description: str
    params: Callable[[int], dict[str, Any]]  # job index -> submit params
    images_per_job: int
    batchable: bool
    jobs_b1: int
    jobs_bn: int


def build_case(options: argparse.Namespace) -> Case:
    """The case for --type, sized for the GPU or (--smoke) for a small CPU."""
    smoke = options.smoke
    kind = options.type
    if kind == "image_creation":
        size = options.size or (64 if smoke else 512)
        steps = options.steps or (4 if smoke else 20)
        return Case(
            task_type=kind,
            model="tiny" if smoke else "sd15",
            model_folder="tiny-sd" if smoke else SD15_FOLDER,
            model_env=["MODEL_IMAGE_CREATION"],
            description=f"text-to-image {size}x{size}, {steps} steps",
            params=lambda index: {"prompt": PROMPT, "width": size, "height": size, "steps": steps, "seed": index},
            images_per_job=1,
            batchable=True,
            jobs_b1=4 if smoke else 16,
            jobs_bn=8 if smoke else 32,
        )
    if kind == "image_to_image":
        size = options.size or (64 if smoke else 512)
        steps = options.steps or (4 if smoke else 20)
        image = data_uri(smooth_image(size, size))
        return Case(
            task_type=kind,
            model="tiny" if smoke else "sd15",
            model_folder="tiny-sd" if smoke else SD15_FOLDER,
            model_env=["MODEL_IMAGE_TO_IMAGE"],
            description=f"image-to-image {size}x{size}, {steps} steps, strength 0.6",
            params=lambda index: {"image": image, "prompt": PROMPT, "steps": steps, "strength": 0.6, "seed": index},
            images_per_job=1,
            batchable=False,
            jobs_b1=4 if smoke else 8,
            jobs_bn=0,
        )
    if kind == "image_upscale":
        # --size is the output's side; the x4 upscaler takes a quarter of it.
        size = options.size or (128 if smoke else 512)
        steps = options.steps or (4 if smoke else 20)
        image = data_uri(smooth_image(size // 4, size // 4))
        return Case(
            task_type=kind,
            model="tiny",
            model_folder="tiny-sd-upscale-x4",
            model_env=["MODEL_IMAGE_UPSCALE_X4"],
            description=f"upscale x4 diffusion {size // 4} -> {size}px, {steps} steps",
            params=lambda index: {
                "image": image,
                "scale_factor": 4,
                "method": "diffusion",
                "prompt": PROMPT,
                "steps": steps,
                "seed": index,
            },
            images_per_job=1,
            batchable=False,
            jobs_b1=4 if smoke else 8,
            jobs_bn=0,
        )
    if kind == "video_creation":
        size = options.size or (64 if smoke else 256)
        steps = options.steps or (4 if smoke else 20)
        duration, fps = (1, 8) if smoke else (2, 8)
        return Case(
            task_type=kind,
            model="tiny",
            model_folder="tiny-animatediff",
            model_env=["MODEL_VIDEO_CREATION"],
            description=f"video {duration * fps} frames {size}x{size}, {steps} steps",
            params=lambda index: {
                "prompt": PROMPT,
                "duration": duration,
                "fps": fps,
                "width": size,
                "height": size,
                "steps": steps,
                "seed": index,
            },
            images_per_job=duration * fps,
            batchable=False,
            jobs_b1=2 if smoke else 4,
            jobs_bn=0,
        )
    faces = face_pair()
    return Case(
        task_type=kind,
        model="none",
        model_folder=None,
        model_env=[],
        description="face swap 512x512 (OpenCV)",
        params=lambda index: dict(faces),
        images_per_job=1,
        batchable=False,
        jobs_b1=4 if smoke else 16,
        jobs_bn=0,
    )


def smooth_image(width: int, height: int) -> Any:
    """A deterministic picture that compresses well: the params (and every status read
    that echoes them) stay small, unlike noise."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [np.sin(x / 23.0), np.sin(y / 17.0), np.sin((x + y) / 31.0)]
    pixels = np.stack([127.5 + 127.5 * channel for channel in channels], axis=-1)
    return Image.fromarray(pixels.astype(np.uint8))


def data_uri(image: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def face_pair() -> dict[str, str]:
    """scikit-image's astronaut (one clear face) onto its mirror image."""
    import numpy as np
    from PIL import Image

    try:
        import skimage
    except ImportError:
        raise SkipCase("scikit-image is not installed: no face photo, face_swap skipped") from None
    astronaut = Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png").convert("RGB")
    mirrored = Image.fromarray(np.ascontiguousarray(np.asarray(astronaut)[:, ::-1]))
    return {"source_image": data_uri(mirrored), "target_image": data_uri(astronaut)}


class SkipCase(Exception):
    """The case cannot run on this host (a missing optional package)."""
