"""Writes of the generation app: uploads of input images."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from PIL import Image

from accounts.models import User
from backserv_site.errors import InvalidInput
from generation.inputs import open_image
from generation.models import Upload

logger = logging.getLogger(__name__)

_EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}


def upload_create(*, owner: User, file: UploadedFile) -> Upload:
    """Store an input image after checking it is one (the same checks a fetched input
    gets), so a job naming it fails for no reason an upload could have shown."""
    limit = settings.GENERATION["INPUT_MAX_BYTES"]
    data = file.read(limit + 1)
    if len(data) > limit:
        raise InvalidInput(
            f"file: larger than the limit of {limit} bytes.", fields={"file": [f"At most {limit} bytes."]}
        )
    try:
        image = open_image(data)
    except ValueError as error:
        raise InvalidInput(f"file: {error}", fields={"file": [str(error)]}) from None
    upload = Upload(
        owner=owner,
        content_type=Image.MIME[image.format],
        size=len(data),
        width=image.width,
        height=image.height,
    )
    upload.file.save(f"upload.{_EXTENSIONS[image.format]}", ContentFile(data), save=False)
    try:
        upload.save()
    except Exception:
        upload.file.delete(save=False)
        raise
    logger.info("upload %s stored for %s (%d bytes)", upload.pk, owner.pk, upload.size)
    return upload


def upload_delete(*, upload: Upload) -> None:
    upload_id, name, storage = upload.pk, upload.file.name, upload.file.storage
    with transaction.atomic():
        upload.delete()
        # The file goes once the row is surely gone; a rollback must not leave a row without its file.
        transaction.on_commit(lambda: storage.delete(name))
    logger.info("upload %s deleted", upload_id)
