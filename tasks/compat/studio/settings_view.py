"""The studio's GET/PUT /api/settings (shared/seeds/003): the caller's generation
defaults. storagePath is reported but not settable: where outputs are stored is the
operator's choice (MEDIA_ROOT or S3), never a client's."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import User
from backserv_site.errors import InvalidInput
from tasks.compat.renaming import invalid_input_renamed
from tasks.compat.studio.errors import StudioError, StudioView
from tasks.compat.studio.selectors import generation_defaults_effective
from tasks.compat.studio.services import generation_defaults_update
from tasks.storage import task_files_prefix

SETTING_NAMES = {
    "params.width": "defaultWidth",
    "params.height": "defaultHeight",
    "params.steps": "defaultSteps",
    "params.guidance_scale": "defaultCfgScale",
}


def storage_path() -> str:
    # Where outputs can be fetched from, not a server directory.
    return f"{settings.MEDIA_URL}{task_files_prefix('').rstrip('/')}"


def settings_body(user: User) -> dict[str, Any]:
    defaults = generation_defaults_effective(user=user)
    return {
        "storagePath": storage_path(),
        "defaultWidth": defaults["width"],
        "defaultHeight": defaults["height"],
        "defaultSteps": defaults["steps"],
        "defaultCfgScale": defaults["cfg_scale"],
    }


class SettingsUpdate(serializers.Serializer):
    storagePath = serializers.CharField(required=False, allow_blank=True)
    defaultWidth = serializers.IntegerField(required=False)
    defaultHeight = serializers.IntegerField(required=False)
    defaultSteps = serializers.IntegerField(required=False)
    defaultCfgScale = serializers.FloatField(required=False)

    def validate_storagePath(self, value: str) -> str:
        if value != storage_path():
            raise StudioError(
                "storagePath cannot be changed: outputs are stored where the server operator configured.",
                code="STORAGE_PATH_READ_ONLY",
                fields={"storagePath": [f"Read-only; it is {storage_path()}."]},
            )
        return value


class SettingsView(StudioView):
    def get(self, request: Request) -> Response:
        return Response({"success": True, "data": settings_body(request.user)})

    def put(self, request: Request) -> Response:
        update = SettingsUpdate(data=request.data)
        update.is_valid(raise_exception=True)
        data = update.validated_data
        try:
            generation_defaults_update(
                user=request.user,
                width=data.get("defaultWidth"),
                height=data.get("defaultHeight"),
                steps=data.get("defaultSteps"),
                cfg_scale=data.get("defaultCfgScale"),
            )
        except InvalidInput as error:
            raise invalid_input_renamed(error, lambda name: SETTING_NAMES.get(name, name)) from None
        return Response({"success": True, "message": "Settings updated", "data": settings_body(request.user)})
