"""Image inputs of jobs: what an image param may name, the checks made at submit, and
turning a reference into a decoded image in the worker.

A reference is an http(s) URL, a `data:` URI (or bare base64), `upload:<id>` (or the
bare upload id), or `task:<id>`: the first output of an earlier successful job of the
same owner. Submit checks the shape and who owns what (400, field named); the worker
fetches and decodes, and a failure there ends the job with an INPUT_* code.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import uuid
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from django.conf import settings
from django.core.files.storage import default_storage
from PIL import Image, ImageOps, UnidentifiedImageError
from rest_framework import serializers

from backserv_site.netsafety import address_refusal
from generation.fetch import INPUT_TOO_LARGE, fetch_url
from generation.models import Upload
from generation.pipelines.base import PipelineInputError
from tasks.models import TERMINAL_STATES, Task, TaskState

INPUT_NOT_IMAGE = "INPUT_NOT_IMAGE"
INPUT_NOT_FOUND = "INPUT_NOT_FOUND"
INPUT_TASK_NOT_READY = "INPUT_TASK_NOT_READY"

# Formats Pillow may decode: the common web formats, nothing exotic to widen the attack surface.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
_BASE64 = re.compile(r"^[A-Za-z0-9+/\s]+={0,2}$")
_DATA_URI = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[\w.-]+)*;base64,(?P<data>.*)$", re.DOTALL)
_MAX_URL_LENGTH = 2048

ReferenceKind = Literal["url", "data", "upload", "task"]


class InputError(PipelineInputError, ValueError):
    """An input that cannot be used: fails the job in a worker, a 400 at submit."""


@dataclass(frozen=True)
class ImageReference:
    kind: ReferenceKind
    value: str  # the URL, the base64 payload, or the id

    def __str__(self) -> str:
        if self.kind in ("upload", "task"):
            return f"{self.kind}:{self.value}"
        if self.kind == "data":
            return f"data:;base64,{self.value}"
        return self.value


def parse_reference(text: str) -> ImageReference:
    """The reference a param names, or ValueError saying what is accepted."""
    lowered = text[:8].lower()
    if lowered.startswith(("http://", "https://")):
        return ImageReference("url", text)
    if lowered.startswith("data:"):
        match = _DATA_URI.match(text)
        if match is None:
            raise ValueError("A data: URI must be base64-encoded (data:image/png;base64,...).")
        return ImageReference("data", match["data"])
    for kind in ("upload", "task"):
        if lowered.startswith(f"{kind}:"):
            return ImageReference(kind, _uuid(text.split(":", 1)[1], kind))  # type: ignore[arg-type]
    try:
        return ImageReference("upload", str(uuid.UUID(text)))
    except ValueError:
        pass
    if len(text) >= 16 and _BASE64.match(text):
        return ImageReference("data", text)
    raise ValueError("Must be an http(s) URL, a data: URI or base64 image, an upload id, or task:<id>.")


def _uuid(text: str, kind: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ValueError(f"{kind}:<id> needs a valid id, got {text!r}.") from None


class ImageInputField(serializers.CharField):
    """An input image: an http(s) URL, a data:image URI (or bare base64), upload:<id>
    or task:<id> (the first output of an earlier job of yours).

    Needs the submitting user as context["owner"]."""

    def to_internal_value(self, data: Any) -> str:
        text = super().to_internal_value(data)
        try:
            reference = parse_reference(text)
            _check_at_submit(reference, self.context["owner"])
        except ValueError as error:
            raise serializers.ValidationError(str(error)) from None
        return str(reference)


def _check_at_submit(reference: ImageReference, owner: Any) -> None:
    if reference.kind == "url":
        _check_url(reference.value)
    elif reference.kind == "data":
        decode_image(_base64_payload(reference.value))
    elif reference.kind == "upload":
        if not Upload.objects.filter(pk=reference.value, owner=owner).exists():
            raise ValueError(f"Upload {reference.value} not found.")
    else:
        state = Task.objects.filter(pk=reference.value, owner=owner).values_list("state", flat=True).first()
        if state is None:
            raise ValueError(f"Task {reference.value} not found.")
        # An unfinished job may still succeed by the time this one runs.
        if state in TERMINAL_STATES and state != TaskState.SUCCESS:
            raise ValueError(f"Task {reference.value} ended {state}; only a successful task's output can be used.")


def _check_url(url: str) -> None:
    if len(url) > _MAX_URL_LENGTH:
        raise ValueError(f"A URL may have at most {_MAX_URL_LENGTH} characters.")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018  (parsing the port is the check)
    except ValueError:
        raise ValueError("The URL has a bad port.") from None
    if not parts.hostname:
        raise ValueError("The URL has no host.")
    # A literal address can be judged now; a host name is judged on every lookup when fetched.
    try:
        refusal = address_refusal(parts.hostname)
    except ValueError:
        return
    if refusal:
        raise ValueError(refusal)


def _base64_payload(payload: str) -> bytes:
    limit = settings.GENERATION["INPUT_MAX_BYTES"]
    if len(payload) > limit * 4 // 3 + 4:
        raise ValueError(f"The image is larger than the limit of {limit} bytes.")
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("The base64 data cannot be decoded.") from None


def decode_image(data: bytes) -> Image.Image:
    """The upright RGB image in data, or InputError."""
    # Phone photos store their rotation in EXIF; the pipelines want upright pixels.
    return ImageOps.exif_transpose(open_image(data)).convert("RGB")


def open_image(data: bytes) -> Image.Image:
    """The decoded image in data (its format kept), or InputError.

    The pixel count is checked from the header before anything is decoded: a small file
    can describe a huge canvas (a decompression bomb). Pillow's own MAX_IMAGE_PIXELS
    guard stays on behind this lower, configurable one.
    """
    limit = settings.GENERATION["INPUT_MAX_PIXELS"]
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as error:
        raise InputError(INPUT_TOO_LARGE, str(error)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise InputError(INPUT_NOT_IMAGE, f"The data is not an image ({', '.join(IMAGE_FORMATS)}).") from None
    if image.width * image.height > limit:
        raise InputError(INPUT_TOO_LARGE, f"The image is {image.width}x{image.height}; the limit is {limit} pixels.")
    try:
        image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise InputError(INPUT_NOT_IMAGE, f"The image cannot be decoded: {error}.") from None
    return image


def resolve_images(*, task: Task, params: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """The params with each image field's reference replaced by its decoded RGB image."""
    resolved = dict(params)
    for name in fields:
        if name in params:
            try:
                resolved[name] = decode_image(_fetch(parse_reference(params[name]), owner_id=task.owner_id))
            except PipelineInputError as error:
                raise PipelineInputError(error.code, f"{name}: {error.message}") from None
    return resolved


def _fetch(reference: ImageReference, *, owner_id: int) -> bytes:
    if reference.kind == "url":
        return fetch_url(reference.value)
    if reference.kind == "data":
        try:
            return _base64_payload(reference.value)
        except ValueError as error:
            raise InputError(INPUT_NOT_IMAGE, str(error)) from None
    if reference.kind == "upload":
        upload = Upload.objects.filter(pk=reference.value, owner_id=owner_id).first()
        if upload is None:
            raise InputError(INPUT_NOT_FOUND, f"Upload {reference.value} no longer exists.")
        return _read_stored(upload.file.name)
    source = Task.objects.filter(pk=reference.value, owner_id=owner_id).values_list("state", "result").first()
    if source is None:
        raise InputError(INPUT_NOT_FOUND, f"Task {reference.value} no longer exists.")
    state, result = source
    if state != TaskState.SUCCESS:
        raise InputError(INPUT_TASK_NOT_READY, f"Task {reference.value} is {state}, not SUCCESS; it has no output yet.")
    outputs = (result or {}).get("outputs") or []
    if not outputs or not str(outputs[0].get("content_type", "")).startswith("image/"):
        raise InputError(INPUT_NOT_IMAGE, f"Task {reference.value} has no image output.")
    if not outputs[0].get("path"):
        # Its files were deleted by result retention (RESULT_RETENTION_DAYS).
        raise InputError(INPUT_NOT_FOUND, f"Task {reference.value}'s output has expired and was deleted.")
    return _read_stored(outputs[0]["path"])


def _read_stored(name: str) -> bytes:
    limit = settings.GENERATION["INPUT_MAX_BYTES"]
    try:
        with default_storage.open(name, "rb") as stored:
            data = stored.read(limit + 1)
    except FileNotFoundError:
        raise InputError(INPUT_NOT_FOUND, "The stored file no longer exists.") from None
    if len(data) > limit:
        raise InputError(INPUT_TOO_LARGE, f"The file is larger than the limit of {limit} bytes.")
    return data
