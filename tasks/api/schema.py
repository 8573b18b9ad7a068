"""OpenAPI pieces of the jobs' views: examples and request headers."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter

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
