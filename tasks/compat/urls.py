"""The URLconf of the API documents Back.Serv serves besides its own /api/v1: each
document's routes, from its own package."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [
    path("", include("tasks.compat.backserv.urls")),
    path("", include("tasks.compat.taskmanager.urls")),
    path("", include("tasks.compat.studio.urls")),
    path("", include("tasks.compat.distributed.urls")),
]
