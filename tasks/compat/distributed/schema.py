"""The OpenAPI description of the distributed-system document's routes (shared/seeds/004),
served at /openapi.json (Swagger UI at /docs) apart from Back.Serv's own schema: the
shapes its views build as plain dicts (documentation only), the document's own
examples, its error body, and the JWT scheme. The admin routes' part is in
schema_admin."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import serializers

from tasks.compat.distributed.base import ADMIN_REQUIRED, INVALID_TOKEN, STATUS_NAMES, error_body

TASK_ID = "3f1c2a4e-8b7d-4c1e-9a55-0d2b7e6f9a10"
SERVER_ID = "7d3e5b1a-2c4f-4e6a-9b8d-1f0e2d3c4b5a"


class JwtScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.JwtAuthentication"
    name = "jwt"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "`Authorization: Bearer <JWT>`: HS256 with the server's JWT_SECRET, `sub` = username, "
            "`role` = admin or user, `exp` required (`manage.py create_jwt`). Back.Serv API tokens work too.",
        }


def exclude_from_backserv_schema(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """Back.Serv's own schema (a drf-spectacular preprocessing hook): the other
    documents' routes are described by their documents, and 004's by /openapi.json."""
    return [endpoint for endpoint in endpoints if getattr(endpoint[3].cls, "api_document", None) is None]


# Error bodies --------------------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="Invalid request, Unauthorized, Forbidden, Not found, ...")
    details = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False, help_text="Bad input only."
    )

    class Meta:
        ref_name = "Error"


_ERRORS = {
    400: ("Bad input (the field named), or a job or server in the wrong state.", "Missing required field: priority"),
    401: ("No token, or an invalid or expired one.", INVALID_TOKEN),
    403: ("The route needs the admin role (or a server key).", ADMIN_REQUIRED),
    404: ("No such object among yours.", f"Task not found: {TASK_ID}"),
    429: ("Over the rate limit; see Retry-After.", "Request was throttled. Expected available in 12 seconds."),
}


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    return {
        code: OpenApiResponse(
            ErrorSerializer,
            description=_ERRORS[code][0],
            examples=[OpenApiExample(f"error {code}", value=error_body(code, _ERRORS[code][1]), response_only=True)],
        )
        for code in statuses
    }


def answer(serializer: Any, name: str, value: Any, description: str = "") -> OpenApiResponse:
    return OpenApiResponse(
        serializer, description=description, examples=[OpenApiExample(name, value=value, response_only=True)]
    )


def sent(name: str, value: Any) -> list[OpenApiExample]:
    return [OpenApiExample(name, value=value, request_only=True)]


# Tasks ---------------------------------------------------------------------------------


class TaskBodySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.CharField()
    status = serializers.ChoiceField(choices=sorted(set(STATUS_NAMES.values())))
    priority = serializers.IntegerField()
    progress = serializers.IntegerField(help_text="0-100.")
    serverId = serializers.UUIDField(allow_null=True, help_text="The server the job was routed to.")
    result = serializers.JSONField(allow_null=True, help_text="Outputs with signed download URLs, once COMPLETED.")
    error = serializers.DictField(child=serializers.CharField(), allow_null=True, help_text="{code, message}.")
    createdAt = serializers.IntegerField(help_text="Epoch milliseconds.")
    updatedAt = serializers.IntegerField(help_text="Epoch milliseconds.")

    class Meta:
        ref_name = "Task"


class TaskMessageSerializer(serializers.Serializer):
    message = serializers.CharField()
    taskId = serializers.UUIDField()

    class Meta:
        ref_name = "TaskMessage"


TASK = {
    "id": TASK_ID,
    "type": "image_creation",
    "status": "PROCESSING",
    "priority": 1,
    "progress": 45,
    "serverId": SERVER_ID,
    "result": None,
    "error": None,
    "createdAt": 1704556800000,
    "updatedAt": 1704556810000,
}
CREATE_TASK: dict[str, Any] = {
    "summary": "Create a task",
    "description": "`type`: a Back.Serv task type (`image_creation`, `image_to_image`, `image_upscale`, "
    "`face_swap`, `video_creation`; `-` or `_`) whose params are the `payload` (`capabilities` add nothing "
    "there); any other type runs on a "
    "registered remote server declaring every one of its `capabilities` (by default the type itself), which "
    "is sent the payload unchanged (400 naming `type` when none does). `priority` 0-10, higher first. "
    '`"async": false` answers once the job ends (at most BACKSERV_WAIT_DEFAULT_SECONDS).',
    "examples": [
        *sent(
            "the document's video job (a remote server declares video)",
            {
                "type": "video-processing",
                "priority": 1,
                "payload": {
                    "mimeType": "video/mp4",
                    "model": "standard",
                    "video_quality": "1080p",
                    "video_url": "https://example.com/video.mp4",
                    "enable_upscale": False,
                },
                "capabilities": ["video"],
                "async": True,
            },
        ),
        *sent("text to image", {"type": "image-creation", "priority": 5, "payload": {"prompt": "a fox"}}),
    ],
    "responses": {
        201: answer(TaskBodySerializer, "created", {**TASK, "status": "PENDING", "progress": 0}),
        **errors(400, 401, 403, 429),
    },
}
GET_TASK: dict[str, Any] = {
    "summary": "Get a task's status",
    "responses": {200: answer(TaskBodySerializer, "running", TASK), **errors(401, 404)},
}
UPDATE_TASK: dict[str, Any] = {
    "summary": "Update a task (the server running it)",
    "description": "Only with the server key (`bsk_…`) of the server the job was routed to; user tokens and JWTs "
    "get a 403. `status`: PROCESSING, COMPLETED, FAILED, CANCELLED (or STARTED, SUCCESS, FAILURE, REVOKED); "
    "`progress` 0-100; `result`; `error` (a message or {code, message}).",
    "examples": sent(
        "completed",
        {"status": "COMPLETED", "result": {"output_url": "https://example.com/processed.mp4", "duration": 120}},
    ),
    "responses": {
        200: answer(TaskBodySerializer, "completed", {**TASK, "status": "COMPLETED", "progress": 100}),
        **errors(400, 401, 403, 404),
    },
}
RETRY_TASK: dict[str, Any] = {
    "summary": "Retry a failed, timed out or cancelled task",
    "request": None,
    "responses": {
        200: answer(TaskMessageSerializer, "queued", {"message": "Task queued for retry", "taskId": TASK_ID}),
        **errors(400, 401, 404),
    },
}
CANCEL_TASK: dict[str, Any] = {
    "summary": "Cancel a pending or processing task",
    "description": "A running job stops at its next step; the answer waits a few seconds for it "
    "(BACKSERV_CANCEL_WAIT_SECONDS), else it is a 202 saying cancellation was requested.",
    "request": None,
    "responses": {
        200: answer(TaskMessageSerializer, "cancelled", {"message": "Task cancelled", "taskId": TASK_ID}),
        202: answer(
            TaskMessageSerializer,
            "stopping",
            {"message": "Cancellation requested; the task stops at its next step", "taskId": TASK_ID},
        ),
        **errors(400, 401, 404),
    },
}
