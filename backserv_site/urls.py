from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from backserv_site.dashboard import dashboard_page
from backserv_site.error_bodies import error_body
from backserv_site.health import health, health_live, health_ready
from backserv_site.media import media_file
from backserv_site.metrics import metrics
from tasks.compat.distributed.base import django_error

urlpatterns = [
    path("health", health, name="health"),
    path("health/live", health_live, name="health-live"),
    path("health/ready", health_ready, name="health-ready"),
    path("metrics", metrics, name="metrics"),
    # The operator dashboard, in the admin beside the jobs' list (which links to it).
    path("admin/tasks/task/dashboard/", dashboard_page, name="admin-dashboard"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("tasks.api.urls")),
    path("api/v1/", include("accounts.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    # The task-manager document's (002) dashboard, Back.Serv's own.
    path("dashboard", dashboard_page, name="dashboard"),
    path("dashboard/metrics", metrics, name="dashboard-metrics"),
    path("api/v1/", include("generation.api.urls")),
    path("api/v1/", include("servers.api.urls")),
    # The other API documents' own routes and docs (shared/seeds 000, 002, 003 and 004).
    path("", include("tasks.compat.urls")),
]

if settings.MEDIA_URL.startswith("/"):
    # Outputs and uploads, only under signed URLs (see backserv_site.media). A fleet
    # may use S3 instead, whose presigned URLs do the same job.
    urlpatterns.append(re_path(rf"^{settings.MEDIA_URL.strip('/')}/(?P<path>.+)$", media_file, name="media"))


def not_found(request: HttpRequest, exception: Exception) -> JsonResponse:
    return django_error(request, 404) or JsonResponse(error_body(detail="Not found.", code="not_found"), status=404)


def server_error(request: HttpRequest) -> JsonResponse:
    # Outside DRF's exception handler (plain Django views): still the one error body,
    # never a traceback.
    body = error_body(detail="Internal server error.", code="internal_error")
    return django_error(request, 500) or JsonResponse(body, status=500)


handler404 = not_found
handler500 = server_error
