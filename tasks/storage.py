"""Where a job's files live in Django storage: outputs/<task id>/..."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from uuid import UUID

from django.core.files.storage import default_storage

logger = logging.getLogger(__name__)


def task_files_prefix(task_id: UUID | str) -> str:
    return f"outputs/{task_id}"


def _task_files(task_id: UUID | str) -> list[str]:
    prefix = task_files_prefix(task_id)
    try:
        _, files = default_storage.listdir(prefix)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [f"{prefix}/{name}" for name in files]


def task_files_size(*, task_id: UUID | str) -> int:
    """Bytes stored for a job."""
    total = 0
    for path in _task_files(task_id):
        try:
            total += default_storage.size(path)
        except OSError:
            logger.warning("could not read the size of %s", path, exc_info=True)
    return total


def task_files_left(*, task_id: UUID | str) -> bool:
    """Whether any file of a job is stored (one a delete could not remove, say)."""
    return bool(_task_files(task_id))


def task_files_delete(*, task_id: UUID | str) -> int:
    """Delete every file stored for a job, and its folder; returns the bytes freed."""
    freed = 0
    for path in _task_files(task_id):
        try:
            freed += default_storage.size(path)
            default_storage.delete(path)
        except OSError:
            logger.warning("could not delete %s", path, exc_info=True)
    _remove_folder_if_empty(task_files_prefix(task_id))
    return freed


def _remove_folder_if_empty(prefix: str) -> None:
    """Storage on local disk keeps the folder a job's files were in (object stores have
    no folders): one empty folder per deleted job would pile up."""
    try:
        folder = Path(default_storage.path(prefix))
    except NotImplementedError:
        return
    # rmdir refuses a folder that is not empty (a file written meanwhile stays).
    with contextlib.suppress(OSError):
        folder.rmdir()
