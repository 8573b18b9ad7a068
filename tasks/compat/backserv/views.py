"""Back.Serv's original API (shared/seeds/000): /submit_task, /query_task/<ticket_id>,
/cancel_task/<ticket_id>, with errors as {"error": code, "message": text}.

The ticket is the job's UUID. Our tokens are required here as everywhere; the
document's `user_id` is the caller's own end-user label (the job's user_id in /api/v1).
"""

from __future__ import annotations

import socket
from datetime import datetime
from typing import Any

from django.conf import settings
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backserv_site.error_bodies import exception_handler
from backserv_site.errors import InvalidInput, StateConflict
from tasks import services
from tasks.api.serializers import output_download_url
from tasks.api.views import owned_task
from tasks.compat.renaming import image_url_read_as_image, invalid_input_renamed
from tasks.compat.waiting import task_wait_finished
from tasks.models import ACTIVE_STATES, Task, TaskState

# One way only: each of our states shows as one of the document's.
STATUS_NAMES: dict[str, str] = {
    TaskState.PENDING: "Queueing",
    TaskState.RECEIVED: "Processing",
    TaskState.STARTED: "Processing",
    TaskState.SUCCESS: "Completed",
    TaskState.FAILURE: "Failed",
    TaskState.REVOKED: "Cancelled",
    TaskState.TIMEOUT: "TimedOut",
}


def node_name() -> str:
    return settings.BACKSERV["NODE_NAME"] or socket.gethostname()


def backserv_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Our error, in the document's {"error", "message"} body ("fields" added for bad
    input). The document knows no 409: a job in the wrong state is a 400 here."""
    response = exception_handler(exc, context)
    if response is None:
        return None
    body = response.data
    response.data = {"error": str(body.get("code", "error")), "message": str(body.get("detail", ""))}
    if body.get("fields"):
        response.data["fields"] = body["fields"]
    if response.status_code == status.HTTP_409_CONFLICT:
        response.status_code = status.HTTP_400_BAD_REQUEST
    return response


class BackServView(APIView):
    # Described by its own document (shared/seeds), not by Back.Serv's OpenAPI schema.
    schema = None

    def get_exception_handler(self) -> Any:
        return backserv_exception_handler


class SubmitTaskSerializer(serializers.Serializer):
    task_type = serializers.CharField(max_length=50)
    task_params = serializers.JSONField()
    user_id = serializers.CharField(max_length=200)


def _as_task_params(name: str) -> str:
    return "task_params" + name.removeprefix("params") if name.startswith("params") else name


class SubmitTaskView(BackServView):
    def post(self, request: Request) -> Response:
        submit = SubmitTaskSerializer(data=request.data)
        submit.is_valid(raise_exception=True)
        data = submit.validated_data
        try:
            task = services.task_submit(
                owner=request.user,
                task_type=data["task_type"],
                params=image_url_read_as_image(task_type=data["task_type"], params=data["task_params"]),
                user_label=data["user_id"],
            )
        except InvalidInput as error:
            raise invalid_input_renamed(error, _as_task_params) from None
        # The server it was routed to; this node while it waits for one (or runs here).
        serv_name = task.server.name if task.server_id else node_name()
        body = {"ticket_id": str(task.pk), "serv_name": serv_name, "status": STATUS_NAMES[task.state]}
        return Response(body, status=status.HTTP_202_ACCEPTED)


def _iso(moment: datetime | None) -> str | None:
    return serializers.DateTimeField().to_representation(moment) if moment else None


def query_body(task: Task, request: Request) -> dict[str, Any]:
    """result_info: the URL of the first output once Completed; error_info:
    "<CODE>: <message>" once Failed or TimedOut; null otherwise."""
    outputs = (task.result or {}).get("outputs") or [] if task.state == TaskState.SUCCESS else []
    return {
        "status": STATUS_NAMES[task.state],
        "result_info": output_download_url(outputs[0], request) if outputs else None,
        "error_info": f"{task.error_code}: {task.error_message}" if task.error_code else None,
        "started_at": _iso(task.started_at),
        "completed_at": _iso(task.completed_at),
    }


class QueryTaskView(BackServView):
    def get(self, request: Request, ticket_id: str) -> Response:
        return Response(query_body(owned_task(request, ticket_id), request))


class CancelTaskView(BackServView):
    def post(self, request: Request, ticket_id: str) -> Response:
        task = services.task_cancel(task=owned_task(request, ticket_id))
        if task.state in ACTIVE_STATES:
            # A running job stops at its next step: wait a little so the answer can
            # usually be the document's "Cancelled".
            task = task_wait_finished(task_id=task.pk, timeout=settings.BACKSERV["CANCEL_WAIT_SECONDS"])
        if task.state == TaskState.REVOKED:
            return Response({"status": "Cancelled", "message": "Task successfully cancelled"})
        if task.is_terminal:
            raise StateConflict(f"Task finished as {STATUS_NAMES[task.state]} before it could be cancelled.")
        return Response(
            {"status": STATUS_NAMES[task.state], "message": "Cancellation requested; the task stops at its next step."},
            status=status.HTTP_202_ACCEPTED,
        )
