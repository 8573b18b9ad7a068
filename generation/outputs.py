"""Writing a job's outputs to Django storage (MEDIA_ROOT by default, S3 when configured)."""

from __future__ import annotations

from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from generation.pipelines.base import Output
from tasks.models import Task
from tasks.storage import task_files_prefix


def outputs_store(*, task: Task, outputs: list[Output]) -> list[dict[str, Any]]:
    stored = []
    for index, output in enumerate(outputs):
        # The attempt is in the name: a worker that lost its claim and a worker that
        # re-ran the job never write the same file.
        wanted = f"{task_files_prefix(task.pk)}/{task.attempts}-{index}.{output.extension}"
        name = default_storage.save(wanted, ContentFile(output.data))
        stored.append(
            {
                "path": name,
                "url": default_storage.url(name),
                "content_type": output.content_type,
                "size": len(output.data),
                "width": output.width,
                "height": output.height,
            }
        )
    return stored


def outputs_discard(stored: list[dict[str, Any]]) -> None:
    for item in stored:
        default_storage.delete(item["path"])
