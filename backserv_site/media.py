"""Serves files from Django storage (job outputs) when MEDIA_URL is local."""

from __future__ import annotations

import mimetypes
import posixpath

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest
from django.views.decorators.http import require_GET


@require_GET
def media_file(request: HttpRequest, path: str) -> FileResponse:
    name = posixpath.normpath(path).lstrip("/")
    # normpath folds "a/../b"; anything still climbing out of storage is refused.
    if name.startswith("..") or name in {"", "."}:
        raise Http404("No such file.")
    try:
        handle = default_storage.open(name)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        raise Http404("No such file.") from None
    content_type, _ = mimetypes.guess_type(name)
    return FileResponse(handle, content_type=content_type or "application/octet-stream")
