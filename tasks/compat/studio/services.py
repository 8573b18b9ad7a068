"""Writes of the studio's tables: a generation (a job and its studio number) and a
user's defaults."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from accounts.models import User
from generation import specs
from tasks.compat.studio.models import GenerationDefaults, StudioGeneration
from tasks.compat.studio.selectors import generation_defaults_effective
from tasks.services import task_submit


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
