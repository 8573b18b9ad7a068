"""Staff statistics: GET /api/v1/stats/tasks and /api/v1/stats/hourly, each for one day
(?date=); one server's day is servers.api.views.ServerStatsView.
Days are UTC (TIME_ZONE) calendar days; no date means today."""

from __future__ import annotations

from datetime import date

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Scope
from backserv_site.errors import InvalidInput
from backserv_site.schema import errors
from tasks import stats

TASK_STATS_EXAMPLE = OpenApiExample(
    "a day",
    value={
        "date": "2026-11-22",
        "total_tasks": 500,
        "pending_tasks": 10,
        "running_tasks": 2,
        "successful_tasks": 450,
        "failed_tasks": 30,
        "revoked_tasks": 8,
        "retried_tasks": 10,
        "average_processing_time_ms": 4500,
        "server_count": 2,
        "top_servers": [
            {
                "server_id": "6f1c1f3e-8d4e-4f57-9a43-2f7d0f6b2c11",
                "name": "gpu-server-01",
                "tasks_processed": 150,
                "success_rate": 0.98,
            }
        ],
        "hourly_trend": [{"hour": 0, "tasks": 20}],
    },
    response_only=True,
)
HOURLY_EXAMPLE = OpenApiExample(
    "a day by hour",
    value={
        "date": "2026-11-22",
        "hours": [{"hour": 0, "created": 20, "completed": 18, "failed": 2, "average_time_ms": 4200}],
    },
    response_only=True,
)
DATE_PARAMETER = OpenApiParameter(
    "date",
    OpenApiTypes.DATE,
    description="A UTC day as YYYY-MM-DD; today when absent. An empty or malformed value is a 400 naming `date`.",
    required=False,
)


def requested_day(request: Request, *, empty_is_absent: bool = True) -> date:
    """The day `?date=` names; today when absent. Our own routes refuse an empty value,
    as every date filter of theirs does; the distributed document's routes read it as
    absent, which its clients may rely on."""
    raw = request.query_params.get("date")
    if raw is None or (raw == "" and empty_is_absent):
        return timezone.localdate()
    try:
        return date.fromisoformat(raw)
    except ValueError:
        message = f"Must be a date as YYYY-MM-DD, got {raw!r}."
        raise InvalidInput(f"date: {message}", fields={"date": [message]}) from None


class TaskStatsView(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        summary="Job statistics of a day (staff)",
        parameters=[DATE_PARAMETER],
        examples=[TASK_STATS_EXAMPLE],
        responses={200: OpenApiTypes.OBJECT, **errors(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        return Response(stats.stats_tasks(day=requested_day(request, empty_is_absent=False)))


class HourlyStatsView(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        summary="Jobs per hour of a day (staff)",
        parameters=[DATE_PARAMETER],
        examples=[HOURLY_EXAMPLE],
        responses={200: OpenApiTypes.OBJECT, **errors(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        day = requested_day(request, empty_is_absent=False)
        return Response({"date": day.isoformat(), "hours": stats.stats_hourly(day=day)})
