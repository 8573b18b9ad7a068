from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from backserv_site.health import health
from backserv_site.media import media_file
from backserv_site.metrics import metrics

urlpatterns = [
    path("health", health, name="health"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("tasks.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("api/v1/", include("generation.api.urls")),
    path("api/v1/", include("servers.api.urls")),
    # The other API documents' own routes (shared/seeds 000 and 003).
    path("", include("tasks.compat.urls")),
]

if settings.MEDIA_URL.startswith("/"):
    # Outputs sit under unguessable per-job paths (the job's UUID); a fleet may serve
    # MEDIA_ROOT from a web server or use S3 instead.
    urlpatterns.append(re_path(rf"^{settings.MEDIA_URL.strip('/')}/(?P<path>.+)$", media_file, name="media"))
