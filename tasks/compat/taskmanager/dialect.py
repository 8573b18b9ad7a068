"""The task manager's names at /api/v1/tasks, its own route (tasks.api.dialects):
`task_name` for task_type, `kwargs` for params, and positional `args`."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from tasks.api.dialects import SubmitDialect
from tasks.compat.taskmanager.task_names import resolve_task_name


def _fields() -> dict[str, serializers.Field]:
    return {
        "task_name": serializers.CharField(required=False, max_length=50),
        "kwargs": serializers.JSONField(required=False),
        "args": serializers.ListField(child=serializers.JSONField(), required=False, max_length=10),
    }


def task_name_resolved(*, body: dict[str, Any], task_type: str, params: Any, params_name: str) -> tuple[str, Any]:
    """A task_name, or positional args, read as one of our task types and its params."""
    if "task_name" not in body and not body.get("args"):
        return task_type, params
    if not isinstance(params, dict):
        raise serializers.ValidationError({params_name: ["Must be a JSON object."]})
    return resolve_task_name(name=task_type, args=body.get("args", []), params=params)


TASK_MANAGER_SUBMIT = SubmitDialect(
    name="taskmanager",
    fields=_fields,
    aliases={"task_name": "task_type", "kwargs": "params"},
    translate=task_name_resolved,
)
