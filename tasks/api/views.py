from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import django_filters
from django.db.models import QuerySet
from rest_framework import generics, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from generation.specs import TASK_TYPES
from servers.api.serializers import TaskReportSerializer
from servers.api.views import WITH_SERVER_KEYS
from servers.authentication import IsServer
from servers.remote import task_report_from_server
from tasks import services
from tasks.api.serializers import TaskSerializer, TaskSubmitSerializer
from tasks.errors import NotFound
from tasks.models import Task, TaskState

if TYPE_CHECKING:
    from servers.models import Server


def owned_tasks(request: Request) -> QuerySet[Task]:
    return Task.objects.filter(owner=request.user)


def owned_task(request: Request, task_id: str) -> Task:
    # A malformed id is simply not found, and so is someone else's job: the API never
    # tells whether an id exists for another user.
    try:
        pk = uuid.UUID(task_id)
    except ValueError:
        pk = None
    task = owned_tasks(request).filter(pk=pk).first() if pk else None
    if task is None:
        raise NotFound(f"Task {task_id} not found.")
    return task


class TaskFilter(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=TaskState.choices)
    task_type = django_filters.MultipleChoiceFilter(choices=[(name, name) for name in TASK_TYPES])
    user_id = django_filters.CharFilter(field_name="user_label")
    submitted_after = django_filters.IsoDateTimeFilter(field_name="submitted_at", lookup_expr="gte")
    submitted_before = django_filters.IsoDateTimeFilter(field_name="submitted_at", lookup_expr="lt")

    class Meta:
        model = Task
        fields = ["state", "task_type", "user_id"]


class TaskListCreateView(generics.ListAPIView):
    serializer_class = TaskSerializer
    filterset_class = TaskFilter

    def get_queryset(self) -> QuerySet[Task]:
        return owned_tasks(self.request)

    def post(self, request: Request) -> Response:
        submit = TaskSubmitSerializer(data=request.data)
        submit.is_valid(raise_exception=True)
        task = services.task_submit(owner=request.user, **submit.validated_data)
        return Response(TaskSerializer(task, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)


def server_task(server: Server, task_id: str) -> Task:
    """A job routed to this server; any other is not found, as for users."""
    try:
        pk = uuid.UUID(task_id)
    except ValueError:
        pk = None
    task = Task.objects.filter(pk=pk, server=server).first() if pk else None
    if task is None:
        raise NotFound(f"Task {task_id} not found.")
    return task


class TaskDetailView(APIView):
    # Users read and delete their jobs; a remote GPU server reports on the jobs it runs
    # (PUT) with its server key, which reads nothing else.
    authentication_classes = WITH_SERVER_KEYS

    def get_permissions(self) -> list[BasePermission]:
        if self.request.method == "PUT":
            return [IsServer()]
        return super().get_permissions()

    def put(self, request: Request, task_id: str) -> Response:
        task = server_task(request.auth, task_id)
        report = TaskReportSerializer(data=request.data)
        report.is_valid(raise_exception=True)
        task = task_report_from_server(server=request.auth, task=task, **report.validated_data)
        return Response(TaskSerializer(task, context={"request": request}).data)

    def get(self, request: Request, task_id: str) -> Response:
        return Response(TaskSerializer(owned_task(request, task_id), context={"request": request}).data)

    def delete(self, request: Request, task_id: str) -> Response:
        task = owned_task(request, task_id)
        services.task_delete(task=task)
        return Response({"status": "success", "message": f"Task {task.pk} cleaned up"})


class TaskCancelView(APIView):
    def post(self, request: Request, task_id: str) -> Response:
        task = services.task_cancel(task=owned_task(request, task_id))
        return Response(TaskSerializer(task, context={"request": request}).data)


class TaskRetryView(APIView):
    def post(self, request: Request, task_id: str) -> Response:
        task = services.task_retry(task=owned_task(request, task_id))
        return Response(TaskSerializer(task, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)
