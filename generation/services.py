"""Writes of the generation app: uploads of input images, studio generations and
per-user generation defaults."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from PIL import Image

from accounts.models import User
from backserv_site.errors import InvalidInput
from generation import specs
from generation.inputs import open_image
from generation.models import GenerationDefaults, StudioGeneration, Upload
from generation.selectors import generation_defaults_effective
from tasks.services import task_submit

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


def studio_generation_submit(*, owner: User, kind: str, task_type: str, params: dict[str, Any]) -> StudioGeneration:
    with transaction.atomic():
        task = task_submit(owner=owner, task_type=task_type, params=params)
        return StudioGeneration.objects.create(owner=owner, task=task, kind=kind)


def generation_defaults_update(
    *,
    user: User,
    width: int | None = None,
    height: int | None = None,
    steps: int | None = None,
    cfg_scale: float | None = None,
) -> GenerationDefaults:
    """Save the user's defaults. They are checked as a text-to-image job's params, so
    defaults that are saved are defaults a job accepts (InvalidInput names
    params.width, params.height, params.steps or params.guidance_scale)."""
    given = {"width": width, "height": height, "steps": steps, "cfg_scale": cfg_scale}
    wanted = {**generation_defaults_effective(user=user), **{k: v for k, v in given.items() if v is not None}}
    specs.validate_params(
        owner=user,
        task_type="image_creation",
        params={
            "prompt": "defaults",
            "width": wanted["width"],
            "height": wanted["height"],
            "steps": wanted["steps"],
            "guidance_scale": wanted["cfg_scale"],
        },
    )
    defaults, _ = GenerationDefaults.objects.update_or_create(user=user, defaults=wanted)
    return defaults
