"""The distributed-system document's /api/task routes (shared/seeds/004): create, read,
update (by the server running the job), retry, cancel, over tasks.services.

`type` is a Back.Serv task type (`image_creation`, or `image-creation`) whose params
are the `payload` (its `capabilities` add nothing: the type already says what a server
must run); any other type (the document's `video-processing`) runs only on a registered
remote server declaring the job's `capabilities` (by default the type itself), which is
sent the payload as it is. `async: false` waits for the job.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from backserv_site.errors import InvalidInput, StateConflict
from generation.specs import TASK_TYPES
from servers.authentication import IsServer
from servers.remote import REPORTED_STATES, task_report_from_server
from servers.selectors import remote_capabilities_for_type
from tasks import services
from tasks.api.serializers import TaskSerializer
from tasks.api.views import owned_tasks
from tasks.compat.distributed import schema as docs
from tasks.compat.distributed.base import STATUS_NAMES, DistributedView, camel_field, epoch_ms, one_found
from tasks.compat.renaming import image_url_read_as_image, invalid_input_renamed
from tasks.compat.waiting import task_wait_finished
from tasks.models import ACTIVE_STATES, RETRYABLE_STATES, UNFINISHED_STATES, Task, TaskState

# The job types names as sent: Back.Serv's own in either spelling, others as names.
_TYPE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"


def backserv_task_type(name: str) -> str | None:
    """Our task type for `image_creation` or `image-creation`; None for other types."""
    normalized = name.strip().lower().replace("-", "_")
    return normalized if normalized in TASK_TYPES else None


def _result(task: Task, request: Request) -> dict[str, Any] | None:
    """Our outputs with download URLs signed afresh; a remote server's result as it
    reported it."""
    if task.result is None or "outputs" not in task.result:
        return task.result
    return TaskSerializer(context={"request": request}).get_result(task)


def task_body(task: Task, request: Request) -> dict[str, Any]:
    """The document's fields (progress 0-100, times in epoch ms), plus the job's type,
    priority, result (download URLs signed afresh) and error."""
    return {
        "id": str(task.pk),
        "type": task.task_type,
        "status": STATUS_NAMES[task.state],
        "priority": task.priority,
        "progress": round(task.progress * 100),
        "serverId": str(task.server_id) if task.server_id else None,
        "result": _result(task, request),
        "error": {"code": task.error_code, "message": task.error_message} if task.error_code else None,
        "createdAt": epoch_ms(task.submitted_at),
        "updatedAt": epoch_ms(task.updated_at),
    }


class TaskCreateSerializer(serializers.Serializer):
    type = serializers.RegexField(_TYPE_NAME, max_length=50)
    priority = serializers.IntegerField(min_value=0, max_value=10)
    payload = serializers.DictField(required=False, default=dict)
    capabilities = serializers.ListField(
        child=serializers.RegexField(_TYPE_NAME, max_length=50), required=False, default=list, max_length=20
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        # `async` is a Python keyword, so it cannot be a declared attribute.
        fields["async"] = serializers.BooleanField(
            required=False, default=True, help_text="false: answer when the job ends (at most the sync wait)."
        )
        return fields


class TaskCreateView(DistributedView):
    throttle_scope = "task_create"
    throttle_methods = ("POST",)

    @extend_schema(request=TaskCreateSerializer, **docs.CREATE_TASK)
    def post(self, request: Request) -> Response:
        incoming = TaskCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        task_type = backserv_task_type(data["type"])
        capabilities: list[str] = []
        if task_type is None:
            # Not ours to run: a remote server declaring these capabilities runs it.
            task_type = data["type"].lower()
            capabilities = [name.lower() for name in data["capabilities"]] or remote_capabilities_for_type(task_type)
        try:
            task = services.task_submit(
                owner=request.user,
                task_type=task_type,
                params=image_url_read_as_image(task_type=task_type, params=data["payload"]),
                priority=data["priority"],
                capabilities=capabilities,
            )
        except InvalidInput as error:
            raise invalid_input_renamed(error, camel_field) from None
        if not data["async"]:
            task = task_wait_finished(task_id=task.pk, timeout=settings.BACKSERV["WAIT_DEFAULT_SECONDS"])
        headers = {"Location": f"/api/task/{task.pk}"}
        return Response(task_body(task, request), status=status.HTTP_201_CREATED, headers=headers)


class TaskUpdateSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=list(REPORTED_STATES), required=False)
    progress = serializers.FloatField(required=False, min_value=0.0, max_value=100.0, help_text="0-100.")
    result = serializers.DictField(required=False)
    error = serializers.JSONField(required=False, help_text='A message, or {"code", "message"}.')
    attempt = serializers.IntegerField(required=False, min_value=1)

    def validate_error(self, value: Any) -> dict[str, str]:
        if isinstance(value, str):
            return {"message": value[:2000]}
        if isinstance(value, dict) and all(isinstance(item, str) for item in value.values()):
            return {key: item[:2000] for key, item in value.items() if key in ("code", "message")}
        raise serializers.ValidationError('Must be a message or {"code", "message"}.')

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "status" not in attrs and "progress" not in attrs:
            raise serializers.ValidationError({"status": ["Send a status, a progress, or both."]})
        return attrs


class TaskDetailView(DistributedView):
    def get_permissions(self) -> list[BasePermission]:
        # Only the server the job runs on reports on it, with its server key: a user's
        # token or JWT cannot complete jobs.
        if self.request.method == "PUT":
            return [IsServer()]
        return super().get_permissions()

    @extend_schema(**docs.GET_TASK)
    def get(self, request: Request, task_id: str) -> Response:
        return Response(task_body(one_found(owned_tasks(request), task_id, "Task"), request))

    @extend_schema(request=TaskUpdateSerializer, **docs.UPDATE_TASK)
    def put(self, request: Request, task_id: str) -> Response:
        task = one_found(Task.objects.filter(server=request.auth), task_id, "Task")
        report = TaskUpdateSerializer(data=request.data)
        report.is_valid(raise_exception=True)
        data = report.validated_data
        progress = data.get("progress")
        task = task_report_from_server(
            server=request.auth,
            task=task,
            state=data.get("status"),
            progress=None if progress is None else progress / 100,
            result=data.get("result"),
            error=data.get("error"),
            attempt=data.get("attempt"),
        )
        return Response(task_body(task, request))


def _names(states: frozenset[TaskState]) -> str:
    return ", ".join(sorted({STATUS_NAMES[state] for state in states}))


class TaskRetryView(DistributedView):
    @extend_schema(**docs.RETRY_TASK)
    def post(self, request: Request, task_id: str) -> Response:
        task = one_found(owned_tasks(request), task_id, "Task")
        try:
            services.task_retry(task=task)
        except StateConflict:
            task.refresh_from_db()
            raise StateConflict(
                f"Task is {STATUS_NAMES[task.state]}; only {_names(RETRYABLE_STATES)} tasks can be retried."
            ) from None
        return Response({"message": "Task queued for retry", "taskId": str(task.pk)})


class TaskCancelView(DistributedView):
    @extend_schema(**docs.CANCEL_TASK)
    def post(self, request: Request, task_id: str) -> Response:
        task = one_found(owned_tasks(request), task_id, "Task")
        try:
            task = services.task_cancel(task=task)
        except StateConflict:
            task.refresh_from_db()
            raise StateConflict(
                f"Task is {STATUS_NAMES[task.state]}; only {_names(UNFINISHED_STATES)} tasks can be cancelled."
            ) from None
        if task.state in ACTIVE_STATES:
            # A running job stops at its next step: wait a little so the answer can
            # usually be the document's "Task cancelled".
            task = task_wait_finished(task_id=task.pk, timeout=settings.BACKSERV["CANCEL_WAIT_SECONDS"])
        if task.state == TaskState.REVOKED:
            return Response({"message": "Task cancelled", "taskId": str(task.pk)})
        if task.is_terminal:
            raise StateConflict(f"Task finished as {STATUS_NAMES[task.state]} before it could be cancelled.")
        body = {"message": "Cancellation requested; the task stops at its next step", "taskId": str(task.pk)}
        return Response(body, status=status.HTTP_202_ACCEPTED)
