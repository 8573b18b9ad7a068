"""The studio's seedImage / imagePath: which of the caller's own outputs it names.

Only the caller's finished jobs (by history id, `task:<uuid>`, or the filePath or url
the studio API returned) and uploads (`upload:<uuid>`) can be named; the answer is a
`task:<uuid>` or `upload:<uuid>` reference for the job's params. No path is ever
opened: a path that does not name one of the caller's outputs, `../../etc/passwd`
included, is refused before anything is read.
"""

from __future__ import annotations

import posixpath
import re
import uuid
from typing import Any
from urllib.parse import unquote, urlsplit

from accounts.models import User
from generation.models import Upload
from tasks.compat.studio.errors import StudioError
from tasks.compat.studio.models import StudioGeneration
from tasks.models import Task, TaskState

_OUTPUT = re.compile(r"(?:^|/)(outputs/([0-9a-fA-F-]{36})/[^/]+)$")


def _refused(field: str) -> StudioError:
    message = f"{field} must name one of your generations (its id, filePath or url, or task:<id>) or upload:<id>."
    return StudioError(message, code="INVALID_PARAMETERS", fields={field: [message]})


def _not_found(field: str) -> StudioError:
    return StudioError(f"{field}: image not found.", code="NOT_FOUND", status_code=404, fields={field: ["Not found."]})


def _owned_task(owner: User, task_id: str, field: str) -> Task:
    try:
        pk = uuid.UUID(task_id)
    except ValueError:
        raise _refused(field) from None
    task = Task.objects.filter(owner=owner, pk=pk).first()
    if task is None:
        raise _not_found(field)
    return task


def _owned_upload(owner: User, upload_id: str, field: str) -> str:
    try:
        pk = uuid.UUID(upload_id)
    except ValueError:
        raise _refused(field) from None
    if not Upload.objects.filter(owner=owner, pk=pk).exists():
        raise _not_found(field)
    return f"upload:{pk}"


def _task_of_output(owner: User, value: str, field: str) -> Task:
    path = unquote(urlsplit(value).path if "://" in value else value)
    if "\x00" in path or ".." in path.split("/"):
        raise _refused(field)
    match = _OUTPUT.search(posixpath.normpath(path))
    if match is None:
        raise _refused(field)
    storage_name, task_id = match.groups()
    task = _owned_task(owner, task_id, field)
    outputs = (task.result or {}).get("outputs", [])
    names = [item.get("path") for item in outputs]
    if storage_name not in names:
        raise _not_found(field)
    if names.index(storage_name) != 0:
        raise StudioError(
            f"{field}: only the first image of a generation can be used.",
            code="INVALID_PARAMETERS",
            fields={field: ["Only the first image of a generation can be used."]},
        )
    return task


def studio_input_reference(*, owner: User, value: Any, field: str) -> str:
    """`task:<uuid>` for the caller's finished job that `value` names, or the
    caller's `upload:<uuid>`."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise _refused(field)
    text = str(value).strip()
    if text.isdigit():
        generation = StudioGeneration.objects.filter(owner=owner, pk=int(text)).select_related("task").first()
        if generation is None:
            raise _not_found(field)
        task = generation.task
    elif text.startswith("upload:"):
        return _owned_upload(owner, text.removeprefix("upload:"), field)
    elif text.startswith("task:"):
        task = _owned_task(owner, text.removeprefix("task:"), field)
    else:
        task = _task_of_output(owner, text, field)
    if task.state != TaskState.SUCCESS:
        raise StudioError(
            f"{field}: that generation has no image (it is {task.state}).",
            code="INVALID_PARAMETERS",
            fields={field: ["That generation has no image."]},
        )
    return f"task:{task.pk}"
