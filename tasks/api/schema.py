"""OpenAPI pieces shared by the views: the one error body, examples, auth schemes."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """Every error of the API has this body."""

    detail = serializers.CharField(help_text="What went wrong, for people.")
    code = serializers.CharField(help_text="A stable machine code, e.g. `invalid`, `not_found`, `state_conflict`.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Bad input only: messages per field (dotted paths for nested ones).",
    )

    class Meta:
        ref_name = "Error"


_ERROR_EXAMPLES: dict[int, tuple[str, dict[str, Any]]] = {
    400: (
        "Bad input; `fields` names each bad field.",
        {
            "detail": "params.steps: Must be at most 100.",
            "code": "invalid",
            "fields": {"params.steps": ["Must be at most 100."]},
        },
    ),
    401: ("No token, or a bad one.", {"detail": "Invalid token.", "code": "authentication_failed"}),
    403: (
        "Authenticated, but not allowed: the token lacks the scope this needs, or the route is staff-only.",
        {"detail": "This request needs a token with the 'write' scope.", "code": "insufficient_scope"},
    ),
    429: (
        "Over the rate limit (`rate_limited`, with Retry-After) or the unfinished-job quota (`QUOTA_EXCEEDED`).",
        {"detail": "Request was throttled. Expected available in 12 seconds.", "code": "rate_limited"},
    ),
    404: ("No such object among yours.", {"detail": "Task 3f1c… not found.", "code": "not_found"}),
    409: (
        "The object's state does not allow this.",
        {"detail": "Task is already SUCCESS; only unfinished tasks can be cancelled.", "code": "state_conflict"},
    ),
}


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    return {
        status: OpenApiResponse(
            ErrorSerializer,
            description=_ERROR_EXAMPLES[status][0],
            examples=[OpenApiExample(f"error {status}", value=_ERROR_EXAMPLES[status][1], response_only=True)],
        )
        for status in statuses
    }


TASK_EXAMPLE = {
    "task_id": "3f1c2a4e-8b7d-4c1e-9a55-0d2b7e6f9a10",
    "task_type": "image_creation",
    "state": "PENDING",
    "progress": 0.0,
    "params": {"prompt": "a beautiful sunset", "width": 512, "height": 512, "steps": 25, "seed": 7},
    "priority": 5,
    "user_id": "end-user-42",
    "result": None,
    "error": None,
    "attempts": 0,
    "cancel_requested": False,
    "queue_position": 2,
    "eta_seconds": 12.5,
    "webhook": "https://example.com/hooks/backserv",
    "webhook_events": ["start"],
    "submitted_at": "2026-01-01T12:00:00Z",
    "started_at": None,
    "completed_at": None,
    "queue_seconds": None,
    "gpu_seconds": None,
    "result_expired": False,
}

TASK_EXAMPLES = [OpenApiExample("a waiting job", value=TASK_EXAMPLE, response_only=True, status_codes=["200", "202"])]
TASK_LIST_EXAMPLES = [OpenApiExample("your jobs", value=[TASK_EXAMPLE], response_only=True)]
DELETED_EXAMPLE = OpenApiExample(
    "deleted",
    value={"status": "success", "message": "Task 3f1c2a4e-8b7d-4c1e-9a55-0d2b7e6f9a10 cleaned up"},
    response_only=True,
)
DELIVERY_EXAMPLE = {
    "delivery_id": "9b2e4f60-1c3d-4e5f-8a7b-6c5d4e3f2a1b",
    "task_id": "3f1c2a4e-8b7d-4c1e-9a55-0d2b7e6f9a10",
    "event": "completed",
    "url": "https://example.com/hooks/backserv",
    "state": "delivered",
    "attempts": 2,
    "next_attempt_at": None,
    "created_at": "2026-01-01T12:00:05Z",
    "completed_at": "2026-01-01T12:00:10Z",
    "attempt_log": [
        {"number": 1, "status_code": 503, "duration_ms": 41, "error": "HTTP 503", "created_at": "2026-01-01T12:00:05Z"},
        {"number": 2, "status_code": 200, "duration_ms": 38, "error": "", "created_at": "2026-01-01T12:00:10Z"},
    ],
}
DELIVERY_LIST_EXAMPLES = [OpenApiExample("one delivery", value=[DELIVERY_EXAMPLE], response_only=True)]
DELIVERY_EXAMPLES = [
    OpenApiExample(
        "queued again", value={**DELIVERY_EXAMPLE, "state": "pending"}, response_only=True, status_codes=["202"]
    )
]

SUBMIT_EXAMPLE = OpenApiExample(
    "text to image, with a webhook",
    value={
        "task_type": "image_creation",
        "params": {"prompt": "a beautiful sunset", "width": 512, "height": 512, "steps": 25},
        "priority": 5,
        "user_id": "end-user-42",
        "webhook": "https://example.com/hooks/backserv",
        "webhook_events": ["start"],
    },
    request_only=True,
)
TASK_REPORT_EXAMPLES = [
    OpenApiExample("halfway", value={"state": "STARTED", "progress": 0.5, "attempt": 1}, request_only=True),
    OpenApiExample(
        "running on the server",
        value={
            **TASK_EXAMPLE,
            "state": "STARTED",
            "progress": 0.5,
            "attempts": 1,
            "queue_position": None,
            "eta_seconds": None,
            "started_at": "2026-01-01T12:00:02Z",
        },
        response_only=True,
    ),
]

PREFER_HEADER = OpenApiParameter(
    "Prefer",
    str,
    OpenApiParameter.HEADER,
    description="`wait=N` (0-300 s): answer when the job finishes (200) or after N seconds (202).",
    examples=[OpenApiExample("wait 30 s", value="wait=30")],
)
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    description="Up to 255 characters. The same key with the same body within 24 h returns the original "
    "job (200); with another body, 409 `idempotency_key_reused`.",
    examples=[OpenApiExample("a client-made key", value="order-1234-render")],
)


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiTokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer bs_…` (an API token)."}


class QueryTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.QueryTokenAuthentication"
    name = "queryToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "query",
            "name": "token",
            "description": "The API token as `?token=` (event streams and WebSockets only).",
        }
