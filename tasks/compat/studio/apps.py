from __future__ import annotations

from django.apps import AppConfig


class StudioConfig(AppConfig):
    """The studio document (shared/seeds/003): its tables number the jobs made through it
    and keep each user's defaults."""

    name = "tasks.compat.studio"
    label = "studio"
    verbose_name = "Studio document (003)"
