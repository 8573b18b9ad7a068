from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
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


class StudioGeneration(models.Model):
    """A job made through the studio API (shared/seeds/003), under the integer id that
    document's clients use. The job itself is the record: this row only numbers it."""

    class Kind(models.TextChoices):
        TEXT_TO_IMAGE = "text-to-image"
        IMAGE_TO_IMAGE = "image-to-image"
        UPSCALE = "upscale"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="studio_generations")
    task = models.OneToOneField("tasks.Task", on_delete=models.CASCADE, related_name="studio_generation")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["owner", "-id"], name="studio_generation_recent")]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"


class GenerationDefaults(models.Model):
    """A user's defaults for generations that leave a parameter out (the studio's
    /api/settings). Absent: the server's defaults."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generation_defaults")
    width = models.PositiveIntegerField(validators=[MinValueValidator(64)])
    height = models.PositiveIntegerField(validators=[MinValueValidator(64)])
    steps = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    cfg_scale = models.FloatField(validators=[MinValueValidator(0.0), MaxValueValidator(30.0)])
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "generation defaults"

    def __str__(self) -> str:
        return f"defaults of {self.user}"
