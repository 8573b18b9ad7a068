from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers
from rest_framework.request import Request

from tasks.models import Task


class TaskSubmitSerializer(serializers.Serializer):
    """A submit in Back.Serv's own names (task_type, params) or the names of the
    documents it serves: task_name/kwargs (task-manager) and task_params (Back.Serv 000)."""

    task_type = serializers.CharField(required=False, max_length=50)
    task_name = serializers.CharField(required=False, max_length=50)
    params = serializers.JSONField(required=False)
    kwargs = serializers.JSONField(required=False)
    task_params = serializers.JSONField(required=False)
    priority = serializers.IntegerField(required=False, min_value=0, max_value=10, default=5)
    user_id = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    # Only servers of this group may run the job.
    group = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        names = [attrs[key] for key in ("task_type", "task_name") if key in attrs]
        if not names:
            raise serializers.ValidationError({"task_type": ["This field is required."]})
        if len(set(names)) > 1:
            raise serializers.ValidationError({"task_type": ["task_type and task_name disagree; send one."]})
        given = [key for key in ("params", "kwargs", "task_params") if key in attrs]
        if len(given) > 1:
            raise serializers.ValidationError({given[1]: [f"Send the params once; {given[0]} is already given."]})
        return {
            "task_type": names[0],
            "params": attrs[given[0]] if given else {},
            "priority": attrs["priority"],
            "user_label": attrs["user_id"],
            "group": attrs["group"],
        }


class TaskSerializer(serializers.ModelSerializer):
    task_id = serializers.UUIDField(source="id", read_only=True)
    user_id = serializers.CharField(source="user_label", read_only=True)
    result = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    server_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = Task
        fields = [
            "task_id",
            "task_type",
            "state",
            "progress",
            "params",
            "priority",
            "user_id",
            "result",
            "error",
            "attempts",
            "cancel_requested",
            "group",
            "server_id",
            "wait_reason",
            "submitted_at",
            "started_at",
            "completed_at",
        ]
        read_only_fields = fields

    def get_result(self, task: Task) -> dict[str, Any] | None:
        if task.result is None:
            return None
        request: Request | None = self.context.get("request")
        result = dict(task.result)
        outputs = [{**item, "url": absolute_url(item.get("url"), request)} for item in result.get("outputs", [])]
        for item in outputs:
            item.pop("path", None)
        result["outputs"] = outputs
        if "url" in result:
            result["url"] = absolute_url(result["url"], request)
        return result

    def get_error(self, task: Task) -> dict[str, str] | None:
        if not task.error_code:
            return None
        return {"code": task.error_code, "message": task.error_message}


def absolute_url(url: str | None, request: Request | None) -> str | None:
    if not url or not url.startswith("/"):
        return url
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL + url
    if request is not None:
        return request.build_absolute_uri(url)
    return url
