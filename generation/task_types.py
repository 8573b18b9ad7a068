"""What can be run: each task type with the JSON Schema of its params (made from the spec
that validates them), its defaults and limits, its models, and whether some worker can
run it now (an online server declaring it, or this process's own worker threads)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings

from backserv_site.params_schema import serializer_json_schema
from generation.specs import TASK_TYPES, UPSCALE_FACTORS, TaskTypeSpec
from servers.selectors import task_types_runnable
from tasks import policy

Settings = dict[str, Any]

# The checks specs make in code (validate_<param>, from settings.GENERATION), as the
# JSON Schema keywords they amount to and the limits they are reported as. A param gets
# them where its spec has that method; tests/servers/test_task_types.py submits each
# limit and one past it, so this table cannot say what the specs do not check.
_CHECKED: dict[str, Callable[[Settings], tuple[dict[str, Any], dict[str, Any]]]] = {
    "prompt": lambda g: ({"maxLength": g["MAX_PROMPT_LENGTH"]}, {"max_prompt_length": g["MAX_PROMPT_LENGTH"]}),
    "steps": lambda g: ({"maximum": g["MAX_STEPS"]}, {"max_steps": g["MAX_STEPS"]}),
    "width": lambda g: ({"maximum": g["MAX_WIDTH"], "multipleOf": 8}, {"max_width": g["MAX_WIDTH"]}),
    "height": lambda g: ({"maximum": g["MAX_HEIGHT"], "multipleOf": 8}, {"max_height": g["MAX_HEIGHT"]}),
    "fps": lambda g: ({"maximum": g["MAX_FPS"]}, {"max_fps": g["MAX_FPS"]}),
    "scale_factor": lambda g: ({"enum": list(UPSCALE_FACTORS)}, {"scale_factors": list(UPSCALE_FACTORS)}),
}


def _checked_in_code(spec: TaskTypeSpec, schema: dict[str, Any], generation: Settings) -> dict[str, Any]:
    """Adds the code's checks to the params' schema; returns them as limits."""
    limits: dict[str, Any] = {}
    for name, checks in _CHECKED.items():
        if name in schema["properties"] and hasattr(spec.params, f"validate_{name}"):
            keywords, reported = checks(generation)
            schema["properties"][name].update(keywords)
            limits.update(reported)
    return limits


def _whole_job_limits(spec: TaskTypeSpec, schema: dict[str, Any], generation: Settings) -> dict[str, Any]:
    """Limits of the job as a whole, which no one param's schema can say."""
    properties = schema["properties"]
    limits: dict[str, Any] = {}
    if "duration" in properties and "fps" in properties:
        limits["max_frames"] = generation["MAX_FRAMES"]  # duration x fps
    if "scale_factor" in properties:
        limits["max_output_pixels"] = generation["MAX_UPSCALE_OUTPUT_PIXELS"]
    if spec.image_fields:
        limits["input_max_bytes"] = generation["INPUT_MAX_BYTES"]
        limits["input_max_pixels"] = generation["INPUT_MAX_PIXELS"]
    limits["run_time_limit_seconds"] = policy.run_time_limit_seconds(spec.name)
    limits["queue_timeout_seconds"] = policy.queue_timeout_seconds(spec.name)
    return limits


def _defaults(spec: TaskTypeSpec, schema: dict[str, Any], generation: Settings) -> dict[str, Any]:
    """What a job that leaves a param out gets: the fields' own defaults, and those the
    spec fills in from settings (steps, size). The seed is drawn for each job."""
    properties = schema["properties"]
    if "steps" in properties:
        properties["steps"]["default"] = min(generation["DEFAULT_STEPS"], generation["MAX_STEPS"])
    size_setting = getattr(spec.params, "default_size_setting", None)
    for name, limit in (("width", "MAX_WIDTH"), ("height", "MAX_HEIGHT")):
        if size_setting and name in properties:
            properties[name]["default"] = min(generation[size_setting], generation[limit])
    return {name: field["default"] for name, field in properties.items() if "default" in field}


def _models(spec: TaskTypeSpec, generation: Settings) -> list[dict[str, str]]:
    """The model folders configured for the type (an upscaler's: one per factor), by
    folder name: where they lie on the workers is not the client's business."""
    return [
        {"key": key, "name": Path(folder).name}
        for key, folder in sorted(generation["MODELS"].items())
        if folder and (key == spec.name or key.startswith(f"{spec.name}_"))
    ]


def task_type_described(spec: TaskTypeSpec, *, runnable: set[str]) -> dict[str, Any]:
    generation = settings.GENERATION
    schema = serializer_json_schema(spec.params)
    limits = {**_checked_in_code(spec, schema, generation), **_whole_job_limits(spec, schema, generation)}
    defaults = _defaults(spec, schema, generation)
    return {
        "name": spec.name,
        "description": spec.description,
        "params_schema": schema,
        "defaults": defaults,
        "limits": limits,
        "available": spec.name in runnable,
        "models": _models(spec, generation),
    }


def task_types_described() -> list[dict[str, Any]]:
    runnable = task_types_runnable()
    return [task_type_described(spec, runnable=runnable) for spec in TASK_TYPES.values()]
