from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


def _upload_file_name(upload: Upload, filename: str) -> str:
    # The client's file name is never used: the id is unguessable and safe on every storage.
    return f"uploads/{upload.id}.{filename.rsplit('.', 1)[-1]}"


class Upload(models.Model):
    """An image a user sent to use as a job's input (`upload:<id>` in params)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads")
    file = models.FileField(upload_to=_upload_file_name, max_length=255)
    content_type = models.CharField(max_length=50)
    size = models.PositiveBigIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="upload_owner_recent")]

    def __str__(self) -> str:
        return f"upload {self.id}"
