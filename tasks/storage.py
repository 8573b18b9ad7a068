"""Where a job's files live in Django storage: outputs/<task id>/..."""

from __future__ import annotations

import logging
from uuid import UUID

from django.core.files.storage import default_storage

logger = logging.getLogger(__name__)


def task_files_prefix(task_id: UUID | str) -> str:
    return f"outputs/{task_id}"


def task_files_delete(*, task_id: UUID | str) -> int:
    """Delete every file stored for a job; returns the bytes freed."""
    prefix = task_files_prefix(task_id)
    freed = 0
    try:
        _, files = default_storage.listdir(prefix)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for name in files:
        path = f"{prefix}/{name}"
        try:
            freed += default_storage.size(path)
            default_storage.delete(path)
        except OSError:
            logger.warning("could not delete %s", path, exc_info=True)
    return freed
