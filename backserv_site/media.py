"""Job outputs and uploads, served from Django storage only through signed,
expiring URLs.

Why signed URLs rather than a view that checks the API token: the URLs end up in
<img>/<video> tags, download managers and other tools that cannot send an
Authorization header, and they behave like the presigned S3 URLs the same results
carry when outputs live on S3. Only the owner gets them (inside their own job, which
another user cannot read), they name one file, and they stop working after
MEDIA_URL_MAX_AGE_SECONDS. A URL without a valid, unexpired signature is refused
with 403 before storage is touched.
"""

from __future__ import annotations

import mimetypes
import posixpath
import time

from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage
from django.core.signing import Signer
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from django.utils.http import urlencode
from django.views.decorators.http import require_safe

from backserv_site.error_bodies import error_body

_SIGNER_SALT = "backserv.media"


def _signature(path: str, expires: int, *, key: str | None = None) -> str:
    return Signer(key=key, salt=_SIGNER_SALT).signature(f"{path}\n{expires}")


def media_url(path: str) -> str:
    """The URL a client downloads a stored file from: signed and expiring for files
    this site serves itself, the storage's own (e.g. presigned S3) URL otherwise."""
    if not isinstance(default_storage, FileSystemStorage):
        return default_storage.url(path)
    expires = int(time.time()) + settings.MEDIA_URL_MAX_AGE_SECONDS
    query = urlencode({"expires": expires, "signature": _signature(path, expires)})
    return f"{default_storage.url(path)}?{query}"


def signature_valid(path: str, expires: str, signature: str) -> bool:
    try:
        deadline = int(expires)
    except ValueError:
        return False
    # Under each of SECRET_KEY_FALLBACKS too: links handed out before a key rotation
    # open until they expire. Every key is compared, keeping the timing flat.
    keys = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    matches = [constant_time_compare(signature, _signature(path, deadline, key=key)) for key in keys]
    return deadline > time.time() and any(matches)


@require_safe
def media_file(request: HttpRequest, path: str) -> HttpResponse:
    if not signature_valid(path, request.GET.get("expires", ""), request.GET.get("signature", "")):
        detail = "This file link is missing its signature, altered or expired."
        return JsonResponse(error_body(detail=detail, code="invalid_signature"), status=403)
    name = posixpath.normpath(path).lstrip("/")
    # normpath folds "a/../b"; anything still climbing out of storage is refused.
    if name.startswith("..") or name in {"", "."}:
        raise Http404("No such file.")
    try:
        handle = default_storage.open(name)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        raise Http404("No such file.") from None
    content_type, _ = mimetypes.guess_type(name)
    response = FileResponse(handle, content_type=content_type or "application/octet-stream")
    # The link is a credential: keep it out of shared caches and other sites' logs.
    response["Cache-Control"] = "private, max-age=300"
    response["Referrer-Policy"] = "no-referrer"
    return response
