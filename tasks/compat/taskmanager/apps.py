from __future__ import annotations

from django.apps import AppConfig


class TaskManagerConfig(AppConfig):
    """The GPU task-manager document (shared/seeds/002), whose API is /api/v1 itself."""

    name = "tasks.compat.taskmanager"
    label = "taskmanager"
    verbose_name = "Task-manager document (002)"

    def ready(self) -> None:
        from tasks.api.dialects import submit_dialect_register
        from tasks.compat.taskmanager.dialect import TASK_MANAGER_SUBMIT

        submit_dialect_register(TASK_MANAGER_SUBMIT)
