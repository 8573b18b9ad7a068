"""The distributed-system document's routes (shared/seeds/004), with its description
(/openapi.json) and /docs."""

from __future__ import annotations

from django.urls import include, path

from tasks.compat.distributed.docs import DocumentsSwaggerView, openapi_view

urlpatterns = [
    path("openapi.json", openapi_view, name="schema"),
    path("docs", DocumentsSwaggerView.as_view(), name="docs"),
    path("", include("tasks.compat.distributed.routes")),
]
