from __future__ import annotations

from django.apps import AppConfig


class BackServConfig(AppConfig):
    """Back.Serv's original API (shared/seeds/000): its own routes, and its names at
    /api/v1/tasks."""

    name = "tasks.compat.backserv"
    label = "backserv"
    verbose_name = "Back.Serv original document (000)"

    def ready(self) -> None:
        from tasks.api.dialects import submit_dialect_register
        from tasks.compat.backserv.dialect import BACKSERV_SUBMIT

        submit_dialect_register(BACKSERV_SUBMIT)
