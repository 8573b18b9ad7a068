"""GET /api/v1/task-types and /api/v1/task-types/{name}: what can be run (any user)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backserv_site.errors import NotFound
from backserv_site.schema import errors
from generation.specs import TASK_TYPES
from generation.task_types import task_type_described, task_types_described
from servers.selectors import task_types_runnable


class TaskTypeModelSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="The setting it is configured by: MODEL_<KEY>.")
    name = serializers.CharField(help_text="The model folder's name.")

    class Meta:
        ref_name = "TaskTypeModel"


class TaskTypeSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The `task_type` a submit names.")
    description = serializers.CharField()
    params_schema = serializers.JSONField(
        help_text="JSON Schema (2020-12) of `params`, made from the spec that validates them, limits included."
    )
    defaults = serializers.JSONField(help_text="What a param left out becomes (the seed is drawn per job).")
    limits = serializers.JSONField(
        help_text="The type's limits: sizes, steps, prompt length, frames, input sizes, run time and queue timeout."
    )
    available = serializers.BooleanField(
        help_text="Whether some worker can run it now: an online server declaring it, or the embedded workers."
    )
    models = TaskTypeModelSerializer(many=True)

    class Meta:
        ref_name = "TaskType"


class TaskTypeListSerializer(serializers.Serializer):
    task_types = TaskTypeSerializer(many=True)

    class Meta:
        ref_name = "TaskTypeList"


TASK_TYPE_EXAMPLE = {
    "name": "image_creation",
    "description": "Text to image with a Stable Diffusion model.",
    "params_schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "maxLength": 2000},
            "steps": {"type": "integer", "minimum": 1, "maximum": 100, "default": 25},
            "width": {"type": "integer", "minimum": 64, "maximum": 1024, "multipleOf": 8, "default": 512},
        },
        "required": ["prompt"],
        "additionalProperties": False,
    },
    "defaults": {"steps": 25, "width": 512, "height": 512, "guidance_scale": 7.5, "num_images": 1},
    "limits": {
        "max_prompt_length": 2000,
        "max_steps": 100,
        "max_width": 1024,
        "max_height": 1024,
        "run_time_limit_seconds": 600,
        "queue_timeout_seconds": 600,
    },
    "available": True,
    "models": [{"key": "image_creation", "name": "stable-diffusion-v1-5"}],
}


class TaskTypeListView(APIView):
    @extend_schema(
        summary="List the task types",
        operation_id="api_v1_task_types_list",
        description="Each type a submit may name, with the JSON Schema of its params, its defaults and limits, "
        "the models it runs on, and whether a worker can run it now.",
        responses={200: TaskTypeListSerializer, **errors(401, 403)},
        examples=[OpenApiExample("the types", value={"task_types": [TASK_TYPE_EXAMPLE]}, response_only=True)],
    )
    def get(self, request: Request) -> Response:
        return Response({"task_types": task_types_described()})


class TaskTypeDetailView(APIView):
    @extend_schema(
        summary="One task type",
        responses={200: TaskTypeSerializer, **errors(401, 403, 404)},
        examples=[OpenApiExample("a type", value=TASK_TYPE_EXAMPLE, response_only=True)],
    )
    def get(self, request: Request, name: str) -> Response:
        spec = TASK_TYPES.get(name)
        if spec is None:
            raise NotFound(f"Task type {name} not found. Known: {', '.join(sorted(TASK_TYPES))}.")
        return Response(task_type_described(spec, runnable=task_types_runnable()))
