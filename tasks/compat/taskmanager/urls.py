"""The task-manager document's (shared/seeds/002) own page besides Back.Serv's: /redoc,
the ReDoc of /api/v1, which is its API. Its /docs is the distributed document's (a
selector between both descriptions); /health and /dashboard are Back.Serv's own."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularRedocView

urlpatterns = [
    path("redoc", SpectacularRedocView.as_view(url_name="api-schema"), name="redoc"),
]
