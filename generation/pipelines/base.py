"""What every pipeline module gives and takes. A pipeline module has
`load(model_dir, device, dtype)` and `run(pipeline, params, on_step) -> (outputs, metadata)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Output:
    data: bytes
    content_type: str
    extension: str
    width: int
    height: int


class StepCallback(Protocol):
    """Called after each denoising step; raising from it aborts the run."""

    def __call__(self, step: int, total: int) -> None: ...


class PipelineInputError(Exception):
    """The job's inputs cannot be processed (no retry will help)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message
