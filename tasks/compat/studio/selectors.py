"""Reads of the studio's tables."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from accounts.models import User
from tasks.compat.studio.models import GenerationDefaults, StudioGeneration

DEFAULT_CFG_SCALE = 7.5


def generation_defaults_effective(*, user: User) -> dict[str, Any]:
    """The user's generation defaults, the server's where the user set none."""
    limits = settings.GENERATION
    saved = GenerationDefaults.objects.filter(user=user).first()
    if saved is not None:
        return {"width": saved.width, "height": saved.height, "steps": saved.steps, "cfg_scale": saved.cfg_scale}
    size = limits["DEFAULT_SIZE"]
    return {
        "width": min(size, limits["MAX_WIDTH"]),
        "height": min(size, limits["MAX_HEIGHT"]),
        "steps": min(limits["DEFAULT_STEPS"], limits["MAX_STEPS"]),
        "cfg_scale": DEFAULT_CFG_SCALE,
    }


def studio_history(*, owner: User) -> QuerySet[StudioGeneration]:
    """The owner's studio generations, newest first, each with its job."""
    return StudioGeneration.objects.filter(owner=owner).select_related("task").order_by("-id")
