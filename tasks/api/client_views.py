"""Batch submit, the event stream (WSGI fallback; ASGI serves it from tasks.streams),
webhook secret and webhook deliveries."""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import ApiTokenAuthentication, QueryTokenAuthentication
from backserv_site.error_bodies import error_body
from backserv_site.errors import DomainError, flatten_validation_errors
from backserv_site.schema import errors
from backserv_site.serializers import NoBodySerializer
from tasks import services
from tasks.api.lookup import one_or_not_found
from tasks.api.schema import DELIVERY_EXAMPLES, DELIVERY_LIST_EXAMPLES, TASK_EXAMPLE
from tasks.api.serializers import (
    BatchResponseSerializer,
    BatchSubmitSerializer,
    TaskSerializer,
    TaskSubmitSerializer,
    WebhookDeliverySerializer,
    WebhookSecretSerializer,
    with_queue_positions,
)
from tasks.api.views import owned_task
from tasks.models import Task, WebhookDelivery
from tasks.streams import parse_event_id, task_events_sse_blocking
from tasks.webhooks import webhook_redeliver, webhook_secret_get, webhook_secret_rotate


class TaskBatchView(APIView):
    throttle_scope = "task_create"

    def throttle_cost(self, request: Request) -> int:
        jobs = request.data.get("tasks") if isinstance(request.data, dict) else None
        return len(jobs) if isinstance(jobs, list) else 1

    @extend_schema(
        summary="Submit up to 100 jobs at once",
        description="Each job is validated and queued on its own: valid ones are accepted even when others "
        "fail. `results` lists, in order, each job or its own error.",
        request=BatchSubmitSerializer,
        responses={
            200: BatchResponseSerializer,
            **errors(400, 401, 403, 429),
        },
        examples=[
            OpenApiExample(
                "two jobs, one bad",
                request_only=True,
                value={
                    "tasks": [
                        {"task_type": "image_creation", "params": {"prompt": "a cat"}},
                        {"task_type": "image_creation", "params": {"prompt": "a dog", "steps": 100000}},
                    ]
                },
            ),
            OpenApiExample(
                "one accepted, one rejected",
                response_only=True,
                value={
                    "accepted": 1,
                    "rejected": 1,
                    "results": [
                        {"index": 0, "status": 202, "task": TASK_EXAMPLE},
                        {
                            "index": 1,
                            "status": 400,
                            "error": {
                                "detail": "params.steps: Must be at most 100.",
                                "code": "invalid",
                                "fields": {"params.steps": ["Must be at most 100."]},
                            },
                        },
                    ],
                },
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        batch = BatchSubmitSerializer(data=request.data)
        batch.is_valid(raise_exception=True)
        with services.tasks_submitted_together():
            outcomes = [
                self._submit_one(request, index, item) for index, item in enumerate(batch.validated_data["tasks"])
            ]
        queued = [outcome for outcome in outcomes if isinstance(outcome, Task)]
        # One query per queue for every queued job's position, not one per job.
        context = with_queue_positions({"request": request}, queued)
        results = [
            {"index": index, "status": 202, "task": TaskSerializer(outcome, context=context).data}
            if isinstance(outcome, Task)
            else outcome
            for index, outcome in enumerate(outcomes)
        ]
        return Response({"accepted": len(queued), "rejected": len(results) - len(queued), "results": results})

    def _submit_one(self, request: Request, index: int, item: Any) -> Task | dict[str, Any]:
        """The queued job, or the item's error result."""
        if not isinstance(item, dict):
            fields = {"": ["Must be an object."]}
            error = error_body(detail="Each job must be an object.", code="invalid", fields=fields)
            return {"index": index, "status": 400, "error": error}
        submit = TaskSubmitSerializer(data=item)
        try:
            # A document's names (tasks.api.dialects) may be refused as the body is read.
            if not submit.is_valid():
                fields = flatten_validation_errors(submit.errors)
                name, messages = next(iter(fields.items()))
                detail = f"{name}: {messages[0]}" if name else messages[0]
                body = error_body(detail=detail, code="invalid", fields=fields)
                return {"index": index, "status": 400, "error": body}
            fields = dict(submit.validated_data)
            fields.pop("sync")
            return services.task_submit(owner=request.user, **fields)
        except DomainError as error:
            body = error_body(detail=error.message, code=error.code, fields=error.fields)
            return {"index": index, "status": error.status_code, "error": body}


EVENT_STREAM_SCHEMA = {
    "type": "string",
    "description": "Server-Sent Events: frames of `id:`, `event:` and `data:` lines (data: one JSON object), "
    "each frame ended by a blank line.",
}


class ErrorsAsJson(BaseContentNegotiation):
    """The stream is a StreamingHttpResponse that no renderer touches; the renderer only
    ever writes an error, and that is JSON even for a client that accepts only
    `text/event-stream` (as the ASGI route answers, see tasks.streams)."""

    def select_parser(self, request: Request, parsers: list[BaseParser]) -> BaseParser:
        return parsers[0]

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type


class TaskEventsView(APIView):
    authentication_classes = [ApiTokenAuthentication, QueryTokenAuthentication]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = ErrorsAsJson

    @extend_schema(
        summary="Follow a job's events (Server-Sent Events)",
        description="A `text/event-stream` of the job's state changes and progress, from its event log: each "
        "event has `id:` (the event id), `event:` (its type) and `data:` (JSON: id, task_id, type, state, "
        "created_at, and progress/step/total for progress). Reconnect with `Last-Event-ID` to get what was "
        "missed. The stream ends after the terminal event. The same events come over WebSocket at "
        "`/ws/tasks/{id}` (and `/ws/generation` for all your jobs), token in `?token=`.",
        parameters=[
            OpenApiParameter("Last-Event-ID", int, OpenApiParameter.HEADER, description="Resume after this event."),
            OpenApiParameter("last_event_id", int, description="The same, for clients that cannot set headers."),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                EVENT_STREAM_SCHEMA,
                description="The event stream (`text/event-stream`), not JSON: read it with an SSE client.",
                examples=[
                    OpenApiExample(
                        "progress then success",
                        value='id: 41\nevent: progress\ndata: {"id":41,"task_id":"3f1c…","type":"progress",'
                        '"state":"STARTED","created_at":"2026-01-01T12:00:03Z","progress":0.5,"step":10,"total":20}\n\n'
                        'id: 42\nevent: succeeded\ndata: {"id":42,"task_id":"3f1c…","type":"succeeded",'
                        '"state":"SUCCESS","created_at":"2026-01-01T12:00:05Z"}\n\n',
                    )
                ],
            ),
            **errors(401, 404),
        },
    )
    def get(self, request: Request, task_id: str) -> StreamingHttpResponse:
        task = owned_task(request, task_id)
        last_id = parse_event_id(request.headers.get("Last-Event-ID") or request.query_params.get("last_event_id"))
        response = StreamingHttpResponse(
            task_events_sse_blocking(task.pk, last_id or 0), content_type="text/event-stream; charset=utf-8"
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response


_SECRET_EXAMPLE = [
    OpenApiExample(
        "a secret",
        response_only=True,
        value={"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "rotated_at": "2026-01-01T12:00:00Z"},
    )
]


class WebhookSecretView(APIView):
    @extend_schema(
        summary="Read your webhook signing secret",
        description="Webhooks carry `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 "
        "HMAC-SHA256 of '{webhook-id}.{webhook-timestamp}.{body}'>`, keyed with the base64-decoded part "
        "of this secret after `whsec_` (the Standard Webhooks scheme).",
        responses={200: WebhookSecretSerializer, **errors(401)},
        examples=_SECRET_EXAMPLE,
    )
    def get(self, request: Request) -> Response:
        secret = webhook_secret_get(owner=request.user)
        return Response({"secret": secret.secret, "rotated_at": secret.rotated_at})

    @extend_schema(
        summary="Rotate your webhook signing secret",
        description="Webhooks sent from now on are signed with the new secret.",
        request=None,
        responses={200: WebhookSecretSerializer, **errors(400, 401)},
        examples=_SECRET_EXAMPLE,
    )
    def post(self, request: Request) -> Response:
        NoBodySerializer(data=request.data).is_valid(raise_exception=True)
        secret = webhook_secret_rotate(owner=request.user)
        return Response({"secret": secret.secret, "rotated_at": secret.rotated_at})


class TaskWebhookDeliveriesView(APIView):
    @extend_schema(
        summary="A job's webhook deliveries and each attempt",
        responses={200: WebhookDeliverySerializer(many=True), **errors(401, 404)},
        examples=DELIVERY_LIST_EXAMPLES,
    )
    def get(self, request: Request, task_id: str) -> Response:
        task = owned_task(request, task_id)
        deliveries = task.webhook_deliveries.prefetch_related("attempt_log")
        return Response(WebhookDeliverySerializer(deliveries, many=True).data)


class WebhookRedeliverView(APIView):
    @extend_schema(
        summary="Send a webhook delivery again",
        description="Any delivery, delivered or failed, is sent again with the same `webhook-id` and a fresh "
        "retry schedule.",
        request=None,
        responses={202: WebhookDeliverySerializer, **errors(400, 401, 404)},
        examples=DELIVERY_EXAMPLES,
    )
    def post(self, request: Request, delivery_id: str) -> Response:
        delivery = one_or_not_found(
            WebhookDelivery.objects.filter(task__owner=request.user), delivery_id, "Webhook delivery"
        )
        NoBodySerializer(data=request.data).is_valid(raise_exception=True)
        delivery = webhook_redeliver(delivery=delivery)
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
