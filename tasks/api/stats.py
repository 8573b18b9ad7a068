"""Staff statistics: GET /api/v1/stats/tasks?date= and /api/v1/stats/hourly?date=.
Days are UTC (TIME_ZONE) calendar days; no date means today."""

from __future__ import annotations

from datetime import date

from django.utils import timezone
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tasks import stats
from tasks.errors import InvalidInput


def requested_day(request: Request) -> date:
    raw = request.query_params.get("date")
    if not raw:
        return timezone.localdate()
    try:
        return date.fromisoformat(raw)
    except ValueError:
        message = f"Must be a date as YYYY-MM-DD, got {raw!r}."
        raise InvalidInput(f"date: {message}", fields={"date": [message]}) from None


class TaskStatsView(APIView):
    permission_classes = [IsAdminUser]

    def get(self, request: Request) -> Response:
        return Response(stats.stats_tasks(day=requested_day(request)))


class HourlyStatsView(APIView):
    permission_classes = [IsAdminUser]

    def get(self, request: Request) -> Response:
        day = requested_day(request)
        return Response({"date": day.isoformat(), "hours": stats.stats_hourly(day=day)})
