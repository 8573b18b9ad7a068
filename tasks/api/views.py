from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import django_filters
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view, inline_serializer
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import CharField
from rest_framework.views import APIView

from accounts.permissions import has_admin_access
from backserv_site.errors import InvalidInput
from backserv_site.schema import errors
from backserv_site.serializers import NoBodySerializer
from tasks import services, task_types
from tasks.api.lookup import found_or_not_found, key_or_none, one_or_not_found
from tasks.api.schema import (
    DELETED_EXAMPLE,
    IDEMPOTENCY_HEADER,
    PREFER_HEADER,
    SUBMIT_EXAMPLE,
    TASK_EXAMPLES,
    TASK_LIST_EXAMPLES,
)
from tasks.api.serializers import TaskDetailSerializer, TaskSerializer, TaskSubmitSerializer, with_queue_positions
from tasks.idempotency import MAX_KEY_LENGTH, request_fingerprint, task_submit_idempotent
from tasks.models import Task, TaskState
from tasks.selectors import task_with_read_figures
from tasks.waiting import WAIT_HEADER, wait_until_finished_blocking


def owned_tasks(request: Request) -> QuerySet[Task]:
    """The jobs this request may see and act on: its user's own, or every job for
    staff carrying the admin scope (token or browser session)."""
    owner_id = visible_owner_id(request)
    return Task.objects.all() if owner_id is None else Task.objects.filter(owner_id=owner_id)


def visible_owner_id(request: Request) -> Any | None:
    """Whose jobs this request may see: its user's, or None (everyone's) for staff
    carrying the admin scope."""
    return None if has_admin_access(request) else request.user.pk


def owned_task(request: Request, task_id: str) -> Task:
    return one_or_not_found(owned_tasks(request), task_id, "Task")


class UtcDateTimeField(django_filters.fields.IsoDateTimeField):
    """An ISO 8601 moment, turned to UTC: Python takes offsets up to ±23:59, Postgres
    only to ±15:59, and a query must not fail on what a form accepted."""

    default_error_messages = {"invalid": "Must be an ISO 8601 date-time, e.g. 2026-01-01T12:00:00Z."}

    def to_python(self, value: Any) -> datetime | None:
        if value == "":
            # Present but empty: the schema's date-time has no empty value, and reading
            # it as absent would list every job for a client whose date went missing.
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise ValidationError("Out of range once turned to UTC.", code="invalid") from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


def _moment_filter(lookup_expr: str, meaning: str) -> UtcDateTimeFilter:
    return UtcDateTimeFilter(
        field_name="submitted_at",
        lookup_expr=lookup_expr,
        help_text=f"{meaning}, as an ISO 8601 date-time (e.g. 2026-01-01T12:00:00Z). "
        "An empty or malformed value is a 400 naming this parameter.",
    )


class TaskFilter(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=TaskState.choices)
    task_type = django_filters.MultipleChoiceFilter(choices=task_types.choices)
    user_id = django_filters.CharFilter(field_name="user_label")
    submitted_after = _moment_filter("gte", "Jobs submitted at or after this moment")
    submitted_before = _moment_filter("lt", "Jobs submitted before this moment")

    class Meta:
        model = Task
        fields = ["state", "task_type", "user_id"]


def requested_wait(request: Request, *, sync: bool) -> float:
    """Seconds to wait for the job: `Prefer: wait=N`, else the default when `sync`."""
    limit = settings.BACKSERV["WAIT_MAX_SECONDS"]
    for preference in request.headers.get("Prefer", "").split(","):
        name, _, value = preference.split(";")[0].strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip().strip('"')
        if not value.isdigit() or int(value) > limit:
            message = f"wait must be a whole number of seconds from 0 to {limit}."
            raise InvalidInput(f"Prefer: {message}", fields={"Prefer": [message]})
        return float(value)
    return float(settings.BACKSERV["WAIT_DEFAULT_SECONDS"]) if sync else 0.0


def requested_idempotency_key(request: Request) -> str:
    key = request.headers.get("Idempotency-Key", "").strip()
    if len(key) > MAX_KEY_LENGTH:
        message = f"At most {MAX_KEY_LENGTH} characters."
        raise InvalidInput(f"Idempotency-Key: {message}", fields={"Idempotency-Key": [message]})
    return key


def task_response(request: Request, task: Task, *, status_code: int, headers: dict[str, str] | None = None) -> Response:
    return Response(TaskSerializer(task, context={"request": request}).data, status=status_code, headers=headers)


@extend_schema_view(
    get=extend_schema(
        summary="List your jobs",
        responses={200: TaskSerializer(many=True), **errors(400, 401)},
        examples=TASK_LIST_EXAMPLES,
    ),
)
class TaskListCreateView(generics.ListAPIView):
    serializer_class = TaskSerializer
    filterset_class = TaskFilter
    throttle_scope = "task_create"
    throttle_methods = ("POST",)

    def get_queryset(self) -> QuerySet[Task]:
        if getattr(self, "swagger_fake_view", False):
            # Schema generation: no user, only the model matters.
            return Task.objects.none()
        return owned_tasks(self.request)

    def get_serializer(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("many") and args:
            # A page of jobs: their queue positions in one query per queue.
            page = list(args[0])
            kwargs["context"] = with_queue_positions(self.get_serializer_context(), page)
            return super().get_serializer(page, *args[1:], **kwargs)
        return super().get_serializer(*args, **kwargs)

    @extend_schema(
        summary="Submit a job",
        description='Queues a job (202). With `Prefer: wait=N` or `"sync": true` the answer waits for the '
        "job to finish: 200 with the final job, or 202 with the job as it stands when the wait runs out.",
        request=TaskSubmitSerializer,
        parameters=[PREFER_HEADER, IDEMPOTENCY_HEADER],
        examples=[SUBMIT_EXAMPLE, *TASK_EXAMPLES],
        responses={
            202: OpenApiResponse(TaskSerializer, description="Queued (or still running after the wait)."),
            200: OpenApiResponse(TaskSerializer, description="Finished within the wait, or an idempotent replay."),
            **errors(400, 401, 403, 409, 429),
        },
    )
    def post(self, request: Request) -> Response:
        key = requested_idempotency_key(request)
        submit = TaskSubmitSerializer(data=request.data)
        submit.is_valid(raise_exception=True)
        fields = dict(submit.validated_data)
        wait = requested_wait(request, sync=fields.pop("sync"))
        if key:
            task, created = task_submit_idempotent(
                owner=request.user, idempotency_key=key, fingerprint=request_fingerprint(request.data), **fields
            )
            if not created:
                headers = {"Idempotent-Replayed": "true", "Location": f"/api/v1/tasks/{task.pk}"}
                return task_response(request, task, status_code=status.HTTP_200_OK, headers=headers)
        else:
            task = services.task_submit(owner=request.user, **fields)
        headers = {"Location": f"/api/v1/tasks/{task.pk}"}
        if wait <= 0:
            return task_response(request, task, status_code=status.HTTP_202_ACCEPTED, headers=headers)
        if isinstance(request._request, ASGIRequest):
            # tasks.waiting.SyncWaitMiddleware waits outside Django and answers.
            headers[WAIT_HEADER] = f"{task.pk} {wait:g}"
            return task_response(request, task, status_code=status.HTTP_202_ACCEPTED, headers=headers)
        finished = wait_until_finished_blocking(task.pk, wait)
        # Read again, not refreshed: the figures the submit counted are out of date now.
        task = Task.objects.get(pk=task.pk)
        code = status.HTTP_200_OK if finished else status.HTTP_202_ACCEPTED
        return task_response(request, task, status_code=code, headers=headers)


class TaskDetailView(APIView):
    """A job: read it, delete it. (A remote GPU server reports on its jobs with a PUT
    here too: servers.api.views.TaskReportView adds that.)"""

    @extend_schema(
        summary="Get a job", responses={200: TaskDetailSerializer, **errors(401, 404)}, examples=TASK_EXAMPLES
    )
    def get(self, request: Request, task_id: str) -> Response:
        # One query for the job and what its read shows beyond the row (queue position,
        # lanes, whether it has attempts): a status poll is the API's most frequent call.
        pk = key_or_none(task_id)
        task = task_with_read_figures(pk, owner_id=visible_owner_id(request)) if pk else None
        task = found_or_not_found(task, task_id, "Task")
        return Response(TaskDetailSerializer(task, context={"request": request}).data)

    @extend_schema(
        summary="Delete a finished or queued job and its files",
        responses={
            200: OpenApiResponse(
                inline_serializer("TaskDeleted", {"status": CharField(), "message": CharField()}),
                description="Deleted.",
                examples=[DELETED_EXAMPLE],
            ),
            **errors(401, 404, 409),
        },
    )
    def delete(self, request: Request, task_id: str) -> Response:
        task = owned_task(request, task_id)
        services.task_delete(task=task)
        return Response({"status": "success", "message": f"Task {task.pk} cleaned up"})


class TaskCancelView(APIView):
    @extend_schema(
        summary="Cancel a job",
        description="A queued job is REVOKED at once; a running one stops within one step.",
        request=None,
        responses={200: TaskSerializer, **errors(400, 401, 404, 409)},
        examples=TASK_EXAMPLES,
    )
    def post(self, request: Request, task_id: str) -> Response:
        task = owned_task(request, task_id)
        NoBodySerializer(data=request.data).is_valid(raise_exception=True)
        task = services.task_cancel(task=task)
        return Response(TaskSerializer(task, context={"request": request}).data)


class TaskRetryView(APIView):
    @extend_schema(
        summary="Retry a failed, timed-out or cancelled job",
        request=None,
        responses={202: TaskSerializer, **errors(400, 401, 404, 409)},
        examples=TASK_EXAMPLES,
    )
    def post(self, request: Request, task_id: str) -> Response:
        task = owned_task(request, task_id)
        NoBodySerializer(data=request.data).is_valid(raise_exception=True)
        task = services.task_retry(task=task)
        return Response(TaskSerializer(task, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)
