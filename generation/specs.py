"""Task types and their params: validation that the API process can run without
importing torch or diffusers. Each spec names the pipeline module workers load.

Limits come from settings.GENERATION so operators can raise them for real GPUs; a 400
names the field and the limit. Image params are references (generation.inputs), checked
here for shape and ownership and fetched by the worker.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from rest_framework import serializers

from backserv_site.errors import InvalidInput, flatten_validation_errors
from backserv_site.serializers import RefusesUnknownFields
from generation.delivery import OutputUrlField
from generation.inputs import ImageInputField

MAX_SEED = 2**32 - 1
UPSCALE_FACTORS = (2, 4)
UPSCALE_METHODS = ("diffusion", "lanczos")


def _limit(name: str) -> Any:
    return settings.GENERATION[name]


def _at_most(value: int, limit: int) -> int:
    if value > limit:
        raise serializers.ValidationError(f"Must be at most {limit}, got {value}.")
    return value


def _multiple_of_8(value: int) -> None:
    if value % 8:
        raise serializers.ValidationError(f"Must be a multiple of 8, got {value}.")


class StrictParams(RefusesUnknownFields, serializers.Serializer):
    """Refuses keys it does not know, so a misspelt parameter is an error, not a
    silently ignored default."""

    unknown_field_message = "Unknown parameter."


class DiffusionParams(StrictParams):
    """What every diffusion job takes: a prompt, steps, guidance and a seed."""

    prompt = serializers.CharField(trim_whitespace=True)
    negative_prompt = serializers.CharField(required=False, allow_blank=True, default="")
    steps = serializers.IntegerField(required=False, min_value=1)
    guidance_scale = serializers.FloatField(required=False, min_value=0.0, max_value=30.0, default=7.5)
    seed = serializers.IntegerField(required=False, min_value=0, max_value=MAX_SEED)

    def validate_prompt(self, value: str) -> str:
        limit = _limit("MAX_PROMPT_LENGTH")
        if len(value) > limit:
            raise serializers.ValidationError(f"At most {limit} characters, got {len(value)}.")
        return value

    def validate_steps(self, value: int) -> int:
        return _at_most(value, _limit("MAX_STEPS"))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs.setdefault("steps", min(_limit("DEFAULT_STEPS"), _limit("MAX_STEPS")))
        # Chosen now and stored, so a retry of the job makes the same output.
        attrs.setdefault("seed", secrets.randbelow(MAX_SEED + 1))
        return attrs


class SizedParams(DiffusionParams):
    width = serializers.IntegerField(required=False, min_value=64, validators=[_multiple_of_8])
    height = serializers.IntegerField(required=False, min_value=64, validators=[_multiple_of_8])
    default_size_setting = "DEFAULT_SIZE"

    def validate_width(self, value: int) -> int:
        return _at_most(value, _limit("MAX_WIDTH"))

    def validate_height(self, value: int) -> int:
        return _at_most(value, _limit("MAX_HEIGHT"))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        size = _limit(self.default_size_setting)
        attrs.setdefault("width", min(size, _limit("MAX_WIDTH")))
        attrs.setdefault("height", min(size, _limit("MAX_HEIGHT")))
        return super().validate(attrs)


class ImageCreationParams(SizedParams):
    num_images = serializers.IntegerField(required=False, min_value=1, max_value=4, default=1)


class ImageToImageParams(DiffusionParams):
    """The output has the input's size, rounded down to a multiple of 8."""

    image = ImageInputField()
    strength = serializers.FloatField(required=False, min_value=0.0, max_value=1.0, default=0.7)


class ImageUpscaleParams(StrictParams):
    image = ImageInputField()
    scale_factor = serializers.IntegerField(required=False, default=2)
    method = serializers.ChoiceField(choices=UPSCALE_METHODS, required=False)
    prompt = serializers.CharField(required=False, allow_blank=True, default="")
    steps = serializers.IntegerField(required=False, min_value=1)
    guidance_scale = serializers.FloatField(required=False, min_value=0.0, max_value=30.0)
    seed = serializers.IntegerField(required=False, min_value=0, max_value=MAX_SEED)
    # Where to PUT the result image too (a presigned upload URL), once it is made.
    output_url = OutputUrlField(required=False)

    def validate_scale_factor(self, value: int) -> int:
        if value not in UPSCALE_FACTORS:
            raise serializers.ValidationError(f"Must be one of {', '.join(map(str, UPSCALE_FACTORS))}, got {value}.")
        return value

    def validate_steps(self, value: int) -> int:
        return _at_most(value, _limit("MAX_STEPS"))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        model_key = upscale_model_key(attrs["scale_factor"])
        has_model = bool(_limit("MODELS").get(model_key))
        attrs.setdefault("method", "diffusion" if has_model else "lanczos")
        if attrs["method"] == "diffusion":
            if not has_model:
                raise serializers.ValidationError(
                    {"method": [f"No diffusion upscaler is configured for {attrs['scale_factor']}x; use lanczos."]}
                )
            attrs.setdefault("steps", min(_limit("DEFAULT_STEPS"), _limit("MAX_STEPS")))
            attrs.setdefault("seed", secrets.randbelow(MAX_SEED + 1))
        return attrs


def upscale_model_key(scale_factor: int) -> str:
    return f"image_upscale_x{scale_factor}"


class FaceSwapParams(StrictParams):
    source_image = ImageInputField()
    target_image = ImageInputField()


class VideoCreationParams(SizedParams):
    duration = serializers.IntegerField(required=False, min_value=1, default=2)
    fps = serializers.IntegerField(required=False, min_value=1, default=8)
    default_size_setting = "DEFAULT_VIDEO_SIZE"

    def validate_fps(self, value: int) -> int:
        return _at_most(value, _limit("MAX_FPS"))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        frames = attrs["duration"] * attrs["fps"]
        limit = _limit("MAX_FRAMES")
        if frames > limit:
            raise serializers.ValidationError(
                {"duration": [f"duration x fps is {frames} frames; at most {limit} frames are allowed."]}
            )
        return super().validate(attrs)


@dataclass(frozen=True)
class TaskTypeSpec:
    name: str
    params: type[serializers.Serializer]
    pipeline_module: str  # imported by workers only
    description: str
    # Params holding image references, resolved to images by the worker before the run.
    image_fields: tuple[str, ...] = ()
    # Which settings.GENERATION["MODELS"] entry a job runs on (None: no model folder);
    # by default the entry named after the task type.
    model_for: Callable[[dict[str, Any]], str | None] | None = None
    # For a type whose pipeline module has run_batch: the params a job must share with
    # others to run in one pipeline call with them (None: this job runs alone).
    batch_params_for: Callable[[dict[str, Any]], tuple[Any, ...] | None] | None = None
    # The libraries its pipeline module imports: a worker without one does not offer it.
    libraries: tuple[str, ...] = ("torch", "diffusers")

    def model_key(self, params: dict[str, Any]) -> str | None:
        return self.model_for(params) if self.model_for is not None else self.name

    def batch_key(self, params: dict[str, Any]) -> str:
        """Jobs with the same non-empty key can run as one pipeline call (dynamic batching)."""
        shared = self.batch_params_for(params) if self.batch_params_for is not None else None
        if shared is None:
            return ""
        return json.dumps([self.name, self.model_key(params), *shared])


def _image_creation_batch_params(params: dict[str, Any]) -> tuple[Any, ...] | None:
    # A job's several images come from one noise draw of its seed; in a batch each image
    # has its own generator, so only one-image jobs give in a batch what they give alone.
    if params.get("num_images", 1) != 1:
        return None
    return (params["width"], params["height"], params["steps"], params["guidance_scale"])


def _upscale_model(params: dict[str, Any]) -> str | None:
    return upscale_model_key(params["scale_factor"]) if params["method"] == "diffusion" else None


TASK_TYPES: dict[str, TaskTypeSpec] = {
    spec.name: spec
    for spec in [
        TaskTypeSpec(
            name="image_creation",
            params=ImageCreationParams,
            pipeline_module="generation.pipelines.image_creation",
            description="Text to image with a Stable Diffusion model.",
            batch_params_for=_image_creation_batch_params,
        ),
        TaskTypeSpec(
            name="image_to_image",
            params=ImageToImageParams,
            pipeline_module="generation.pipelines.image_to_image",
            description="An image redrawn after a prompt; strength 0 keeps it, 1 replaces it.",
            image_fields=("image",),
        ),
        TaskTypeSpec(
            name="image_upscale",
            params=ImageUpscaleParams,
            pipeline_module="generation.pipelines.image_upscale",
            description="An image enlarged 2x or 4x, by a diffusion upscaler or by Lanczos resampling.",
            image_fields=("image",),
            model_for=_upscale_model,
            # Lanczos needs Pillow alone; the diffusion method fails its own jobs without a model.
            libraries=("PIL",),
        ),
        TaskTypeSpec(
            name="face_swap",
            params=FaceSwapParams,
            pipeline_module="generation.pipelines.face_swap",
            description="The face of source_image blended onto each face found in target_image.",
            image_fields=("source_image", "target_image"),
            model_for=lambda params: None,
            libraries=("cv2", "numpy"),
        ),
        TaskTypeSpec(
            name="video_creation",
            params=VideoCreationParams,
            pipeline_module="generation.pipelines.video_creation",
            description="Text to video (H.264 mp4) with AnimateDiff.",
            libraries=("torch", "diffusers", "av"),
        ),
    ]
}


def task_type_spec(task_type: str) -> TaskTypeSpec:
    try:
        return TASK_TYPES[task_type]
    except KeyError:
        known = ", ".join(sorted(TASK_TYPES))
        raise InvalidInput(
            f"Unknown task type {task_type!r}. Known: {known}.",
            code="unknown_task_type",
            fields={"task_type": [f"Unknown task type. Known: {known}."]},
        ) from None


def validate_params(*, task_type: str, params: Any, owner: Any) -> dict[str, Any]:
    """The params with defaults filled in, or InvalidInput naming each bad field as
    `params.<name>`. The owner is whose uploads and earlier tasks the params may name."""
    spec = task_type_spec(task_type)
    if not isinstance(params, dict):
        raise InvalidInput("params must be a JSON object.", fields={"params": ["Must be a JSON object."]})
    serializer = spec.params(data=params, context={"owner": owner})
    if not serializer.is_valid():
        fields = {
            f"params.{name}" if name else "params": messages
            for name, messages in flatten_validation_errors(serializer.errors).items()
        }
        first_name, first_messages = next(iter(fields.items()))
        raise InvalidInput(f"{first_name}: {first_messages[0]}", code="invalid_params", fields=fields)
    return dict(serializer.validated_data)
