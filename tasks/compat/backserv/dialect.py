"""Back.Serv 000's names at /api/v1/tasks (tasks.api.dialects): `task_params` for params,
and an upscale's `image_url` for its image."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from tasks.api.dialects import SubmitDialect
from tasks.compat.renaming import image_url_read_as_image


def _fields() -> dict[str, serializers.Field]:
    return {"task_params": serializers.JSONField(required=False)}


def image_url_as_image(*, body: dict[str, Any], task_type: str, params: Any, params_name: str) -> tuple[str, Any]:
    return task_type, image_url_read_as_image(task_type=task_type, params=params)


BACKSERV_SUBMIT = SubmitDialect(
    name="backserv",
    fields=_fields,
    aliases={"task_params": "params"},
    translate=image_url_as_image,
)
