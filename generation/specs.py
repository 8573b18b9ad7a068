"""Task types and their params: validation that the API process can run without
importing torch or diffusers. Each spec names the pipeline module workers load.

Limits come from settings.GENERATION so operators can raise them for real GPUs.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from rest_framework import serializers

from tasks.errors import InvalidInput, flatten_validation_errors

MAX_SEED = 2**32 - 1


def _limit(name: str) -> int:
    return settings.GENERATION[name]


def _multiple_of_8(value: int) -> None:
    if value % 8:
        raise serializers.ValidationError(f"Must be a multiple of 8, got {value}.")


class StrictParams(serializers.Serializer):
    """Refuses keys it does not know, so a misspelt parameter is an error, not a
    silently ignored default."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: [f"Unknown parameter. Known: {', '.join(sorted(self.fields))}."] for name in unknown}
                )
        return super().to_internal_value(data)


class ImageCreationParams(StrictParams):
    prompt = serializers.CharField(trim_whitespace=True)
    negative_prompt = serializers.CharField(required=False, allow_blank=True, default="")
    width = serializers.IntegerField(required=False, min_value=64, validators=[_multiple_of_8])
    height = serializers.IntegerField(required=False, min_value=64, validators=[_multiple_of_8])
    steps = serializers.IntegerField(required=False, min_value=1)
    guidance_scale = serializers.FloatField(required=False, min_value=0.0, max_value=30.0, default=7.5)
    seed = serializers.IntegerField(required=False, min_value=0, max_value=MAX_SEED)
    num_images = serializers.IntegerField(required=False, min_value=1, max_value=4, default=1)

    def validate_prompt(self, value: str) -> str:
        limit = _limit("MAX_PROMPT_LENGTH")
        if len(value) > limit:
            raise serializers.ValidationError(f"At most {limit} characters, got {len(value)}.")
        return value

    def validate_width(self, value: int) -> int:
        return _at_most(value, _limit("MAX_WIDTH"))

    def validate_height(self, value: int) -> int:
        return _at_most(value, _limit("MAX_HEIGHT"))

    def validate_steps(self, value: int) -> int:
        return _at_most(value, _limit("MAX_STEPS"))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        size = _limit("DEFAULT_SIZE")
        attrs.setdefault("width", min(size, _limit("MAX_WIDTH")))
        attrs.setdefault("height", min(size, _limit("MAX_HEIGHT")))
        attrs.setdefault("steps", min(_limit("DEFAULT_STEPS"), _limit("MAX_STEPS")))
        # Chosen now and stored, so a retry of the job makes the same image.
        attrs.setdefault("seed", secrets.randbelow(MAX_SEED + 1))
        return attrs


def _at_most(value: int, limit: int) -> int:
    if value > limit:
        raise serializers.ValidationError(f"Must be at most {limit}, got {value}.")
    return value


@dataclass(frozen=True)
class TaskTypeSpec:
    name: str
    params: type[serializers.Serializer]
    pipeline_module: str  # imported by workers only
    description: str


TASK_TYPES: dict[str, TaskTypeSpec] = {
    spec.name: spec
    for spec in [
        TaskTypeSpec(
            name="image_creation",
            params=ImageCreationParams,
            pipeline_module="generation.pipelines.image_creation",
            description="Text to image with a Stable Diffusion model.",
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


def validate_params(*, task_type: str, params: Any) -> dict[str, Any]:
    """The params with defaults filled in, or InvalidInput naming each bad field as
    `params.<name>`."""
    spec = task_type_spec(task_type)
    if not isinstance(params, dict):
        raise InvalidInput("params must be a JSON object.", fields={"params": ["Must be a JSON object."]})
    serializer = spec.params(data=params)
    if not serializer.is_valid():
        fields = {
            f"params.{name}" if name else "params": messages
            for name, messages in flatten_validation_errors(serializer.errors).items()
        }
        first_name, first_messages = next(iter(fields.items()))
        raise InvalidInput(f"{first_name}: {first_messages[0]}", code="invalid_params", fields=fields)
    return dict(serializer.validated_data)
