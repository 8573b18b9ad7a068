"""What every pipeline module gives and takes. A pipeline module has
`load(model_dir, device, dtype)` and `run(pipeline, params, on_step) -> (outputs, metadata)`;
a type the worker batches also has `run_batch(pipeline, jobs, on_step)`, and one whose
GPU shapes are worth preparing at load `warm_up(pipeline, batch_sizes)`
(generation.acceleration).

model_dir is None for a pipeline that needs no model folder. The runner replaces each of
the task type's image params (TaskTypeSpec.image_fields) by its decoded RGB PIL image.
Nothing here imports torch: the API process imports this module."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from PIL.Image import Image


@dataclass(frozen=True)
class Output:
    """One output file of a job. Its bytes are encoded at the first read of `data`, not
    when the pipeline returns: the worker reads them off the thread that drives the GPU
    (generation.finishing), while the next pipeline call computes."""

    encode: Callable[[], bytes] = field(repr=False)
    content_type: str
    extension: str
    width: int
    height: int

    @cached_property
    def data(self) -> bytes:
        return self.encode()


class StepCallback(Protocol):
    """Called after each denoising step; raising from it aborts the run."""

    def __call__(self, step: int, total: int) -> None: ...


class PipelineInputError(Exception):
    """The job's inputs cannot be processed (no retry will help)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def encode_png(image: Image) -> Output:
    return Output(
        encode=partial(_png_bytes, image),
        content_type="image/png",
        extension="png",
        width=image.width,
        height=image.height,
    )


def _png_bytes(image: Image) -> bytes:
    buffer = io.BytesIO()
    # No pnginfo and a fixed compression level keep the bytes a pure function of the pixels.
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def diffusers_step_end(on_step: StepCallback) -> Callable[..., dict[str, Any]]:
    """A diffusers `callback_on_step_end` reporting to on_step. The total comes from the
    pipeline: image-to-image runs only strength x steps of the steps asked."""

    def report(pipeline: Any, step_index: int, _timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        on_step(step_index + 1, pipeline.num_timesteps)
        return callback_kwargs

    return report


def load_diffusers(pipeline_class: type[Any], model_dir: Path, device: str, dtype: Any, **options: Any) -> Any:
    """A diffusers pipeline from a local folder only (never a hub), quiet, on device."""
    from diffusers.utils import is_accelerate_available

    pipeline = pipeline_class.from_pretrained(
        model_dir,
        local_files_only=True,
        # diffusers 0.42 deprecates torch_dtype in favour of dtype.
        dtype=dtype,
        # Asking for low-memory loading without accelerate only logs a warning on every load.
        low_cpu_mem_usage=is_accelerate_available(),
        **options,
    ).to(device)
    pipeline.set_progress_bar_config(disable=True)
    from generation.acceleration import accelerate

    return accelerate(pipeline, device)
