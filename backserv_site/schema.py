"""OpenAPI pieces every app's views share: the one error body of the API and its
examples per status."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiResponse
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
