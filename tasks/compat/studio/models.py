"""The studio's tables. They were made in the generation app and keep their names
(db_table): the move was of the code, not of the data."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class StudioGeneration(models.Model):
    """A job made through the studio API, under the integer id that document's clients
    use. The job itself is the record: this row only numbers it."""

    class Kind(models.TextChoices):
        TEXT_TO_IMAGE = "text-to-image"
        IMAGE_TO_IMAGE = "image-to-image"
        UPSCALE = "upscale"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="studio_generations")
    task = models.OneToOneField("tasks.Task", on_delete=models.CASCADE, related_name="studio_generation")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "generation_studiogeneration"
        ordering = ["-id"]
        indexes = [models.Index(fields=["owner", "-id"], name="studio_generation_recent")]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"


class GenerationDefaults(models.Model):
    """A user's defaults for the studio's generations that leave a parameter out
    (/api/settings). Absent: the server's defaults."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generation_defaults")
    width = models.PositiveIntegerField(validators=[MinValueValidator(64)])
    height = models.PositiveIntegerField(validators=[MinValueValidator(64)])
    steps = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    cfg_scale = models.FloatField(validators=[MinValueValidator(0.0), MaxValueValidator(30.0)])
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "generation_generationdefaults"
        verbose_name_plural = "generation defaults"

    def __str__(self) -> str:
        return f"defaults of {self.user}"
