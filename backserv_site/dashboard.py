"""The operator dashboard (staff only), in the admin and at /dashboard (the task-manager
document's): jobs by state, the last 24 hours per hour, success rate, run time
percentiles per type, the queue, the worker pool, the GPU configuration and the API's
routes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from backserv_site.health import workers_online
from servers.models import Server
from servers.selectors import milliseconds_since, server_task_counts
from tasks import stats
from tasks.charts import STATE_COLORS, Series, bar_chart, line_chart
from tasks.models import TaskState


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
        "workers": workers_context(now=now),
        "gpu": gpu_configuration(),
        "endpoints": api_routes(),
        "generated_at": now,
    }


def workers_context(*, now: Any) -> dict[str, Any]:
    """The registered servers (workers of ours and remote GPU servers) with their load
    and last heartbeat, and how many workers are alive."""
    servers = list(Server.objects.all())
    counts = server_task_counts(server.pk for server in servers)
    rows = []
    for server in servers:
        load = counts.get(server.pk, {"active": 0, "queued": 0})
        rows.append(
            {
                "server": server,
                "active": load["active"],
                "queued": load["queued"],
                "heartbeat_seconds": (milliseconds_since(server.last_heartbeat_at, now) or 0) / 1000,
            }
        )
    return {"summary": workers_online(), "threads": settings.BACKSERV["WORKER_THREADS"], "servers": rows}


def gpu_configuration() -> list[tuple[str, str]]:
    """What decides where and how pipelines run. The API process never imports torch, so
    the device is the setting; each worker's GPU use is in its heartbeat metrics."""
    generation = settings.GENERATION
    rows = [
        ("Device", generation["DEVICE"] or "auto: CUDA (fp16) when present, else CPU (fp32)"),
        ("Pipelines kept loaded per worker", str(generation["PIPELINE_CACHE_SIZE"])),
        ("Load models at worker start", "yes" if generation["PRELOAD_MODELS"] else "no"),
        ("Largest image", f"{generation['MAX_WIDTH']} x {generation['MAX_HEIGHT']}"),
        ("Most steps", str(generation["MAX_STEPS"])),
        ("Worker queue", settings.BACKSERV["QUEUE_NAME"]),
    ]
    rows += [(f"Model {key}", folder or "(none)") for key, folder in sorted(generation["MODELS"].items())]
    return rows


def _route_methods(pattern: URLPattern) -> str:
    view_class = getattr(pattern.callback, "cls", None) or getattr(pattern.callback, "view_class", None)
    if view_class is None:
        return "GET"
    methods = [method.upper() for method in ("get", "post", "put", "patch", "delete") if hasattr(view_class, method)]
    return ", ".join(methods)


def _route_path(route: str) -> str:
    for converter in ("str:", "int:", "uuid:", "path:"):
        route = route.replace(f"<{converter}", "<")
    route = route.replace("<", "{").replace(">", "}").replace("(?P{", "{")
    return "/" + route.lstrip("^").replace("/?$", "").rstrip("$").replace("[^/]+)", "")


def api_routes(patterns: list[Any] | None = None, prefix: str = "") -> list[dict[str, str]]:
    """Every route outside the admin and media, walked from the URLconf so it never
    goes stale: path, methods, name."""
    routes = []
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(entry.pattern)
        if route.startswith(("admin/", "media/", "^media/")):
            continue
        if isinstance(entry, URLResolver):
            routes += api_routes(entry.url_patterns, route)
        else:
            routes.append({"path": _route_path(route), "methods": _route_methods(entry), "name": entry.name or ""})
    return routes


def dashboard_view(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Back.Serv dashboard",
        **dashboard_context(now=timezone.now()),
    }
    return TemplateResponse(request, "admin/dashboard.html", context)


# /dashboard: the same page, behind the admin's staff login.
dashboard_page = admin.site.admin_view(dashboard_view)
