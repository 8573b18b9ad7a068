"""The operator dashboard inside the admin (staff only): jobs by state, the last 24
hours per hour, success rate, run time percentiles per type, and the queue."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from tasks import stats
from tasks.charts import Series, bar_chart, line_chart
from tasks.models import TaskState

STATE_COLORS = {
    TaskState.PENDING: "#9e9e9e",
    TaskState.RECEIVED: "#64b5f6",
    TaskState.STARTED: "#1e88e5",
    TaskState.SUCCESS: "#43a047",
    TaskState.FAILURE: "#e53935",
    TaskState.TIMEOUT: "#fb8c00",
    TaskState.REVOKED: "#6d4c41",
}


def dashboard_context(*, now: Any) -> dict[str, Any]:
    day_ago = now - timedelta(hours=24)
    by_state = stats.tasks_by_state(finished_since=day_ago)
    hours = stats.dashboard_hours(now=now)
    rate = stats.success_rate(since=day_ago)
    return {
        "by_state": by_state,
        "total": sum(by_state.values()),
        "state_chart": bar_chart(
            chart_id="chart-states",
            title="Jobs waiting and running now, finished in the last 24 hours",
            labels=list(by_state),
            values=list(by_state.values()),
            colors=[STATE_COLORS[TaskState(state)] for state in by_state],
        ),
        "hourly_chart": line_chart(
            chart_id="chart-hourly",
            title="Jobs per hour, last 24 hours",
            labels=[f"{timezone.localtime(slot.hour):%H}h" for slot in hours],
            series=[
                Series("created", [slot.created for slot in hours], "#1e88e5"),
                Series("completed", [slot.completed for slot in hours], "#43a047"),
                Series("failed", [slot.failed for slot in hours], "#e53935"),
            ],
        ),
        "hours": hours,
        "success_rate": None if rate is None else round(rate * 100, 1),
        "percentiles": sorted(stats.duration_percentiles(since=day_ago).items()),
        "queue": stats.queue_summary(now=now),
        "generated_at": now,
    }


def dashboard_view(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Back.Serv dashboard",
        **dashboard_context(now=timezone.now()),
    }
    return TemplateResponse(request, "admin/tasks/dashboard.html", context)
