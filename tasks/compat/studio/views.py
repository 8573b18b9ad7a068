"""The studio's synchronous generate routes and the history.

A generation is a job submitted through tasks.services plus a StudioGeneration row
that gives it the integer id the document's clients use. The generate routes answer
once the job is done (at most BACKSERV["STUDIO_SYNC_TIMEOUT"] seconds).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from backserv_site.errors import InvalidInput, StateConflict
from generation.specs import TASK_TYPES
from tasks import services
from tasks.api.serializers import output_download_url
from tasks.compat.renaming import invalid_input_renamed
from tasks.compat.studio.errors import StudioError, StudioView
from tasks.compat.studio.inputs import studio_input_reference
from tasks.compat.studio.models import StudioGeneration
from tasks.compat.studio.names import STATUS_NAMES, STUDIO_NAMES
from tasks.compat.studio.selectors import generation_defaults_effective, studio_history
from tasks.compat.studio.services import studio_generation_submit
from tasks.compat.waiting import task_wait_finished
from tasks.models import Task, TaskState

VIDEO_TASK_TYPES = frozenset({"video_creation"})


def _iso(moment: datetime) -> str:
    return serializers.DateTimeField().to_representation(moment)


def _first_output(task: Task) -> dict[str, Any]:
    outputs = (task.result or {}).get("outputs") or [{}]
    return outputs[0]


def generation_body(generation: StudioGeneration, request: Request, *, detail: bool = False) -> dict[str, Any]:
    """filePath is the image's name in our storage (what seedImage/imagePath take
    back); url is where to download it."""
    task = generation.task
    output = _first_output(task)
    body: dict[str, Any] = {
        "id": generation.pk,
        "type": "video" if task.task_type in VIDEO_TASK_TYPES else "image",
        "prompt": task.params.get("prompt", ""),
        "filePath": output.get("path"),
        "url": output_download_url(output, request) if output else None,
        "seed": task.params.get("seed"),
        "status": STATUS_NAMES[task.state],
        "created_at": _iso(generation.created_at),
    }
    if detail:
        body["negativePrompt"] = task.params.get("negative_prompt", "")
        body["parameters"] = {
            STUDIO_NAMES.get(name, name): value
            for name, value in task.params.items()
            if name not in {"prompt", "negative_prompt", "image", "image_url"}
        }
    return body


def _require_prompt(prompt: str) -> None:
    if not prompt.strip():
        raise StudioError("Prompt is required", code="INVALID_PROMPT", fields={"prompt": ["This field is required."]})


class GenerateView(StudioView):
    kind: str
    task_type: str
    request_serializer: type[serializers.Serializer]
    # The studio's name for the input image, when the route takes one.
    image_field = ""

    def params(self, request: Request, data: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def studio_field(self, name: str) -> str:
        """A params error's field under the name the caller sent."""
        bare = name.removeprefix("params.")
        if bare == "image" and self.image_field:
            return self.image_field
        return STUDIO_NAMES.get(bare, bare)

    def post(self, request: Request) -> Response:
        incoming = self.request_serializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = dict(incoming.validated_data)
        if self.image_field:
            data["image"] = studio_input_reference(
                owner=request.user, value=data[self.image_field], field=self.image_field
            )
        params = {name: value for name, value in self.params(request, data).items() if value is not None}
        if self.task_type not in TASK_TYPES:
            raise StudioError(
                f"{self.kind} is not available on this server (task type {self.task_type} is not installed).",
                code="TASK_TYPE_UNAVAILABLE",
                status_code=503,
            )
        try:
            generation = studio_generation_submit(
                owner=request.user, kind=self.kind, task_type=self.task_type, params=params
            )
        except InvalidInput as error:
            raise invalid_input_renamed(error, self.studio_field) from None
        generation.task = self._finished(generation.task)
        if generation.task.state != TaskState.SUCCESS:
            reason = generation.task.error_message or f"the job ended {generation.task.state}"
            raise StudioError(f"Generation failed: {reason}", code="API_ERROR", status_code=500)
        return Response({"success": True, "data": generation_body(generation, request)})

    def _finished(self, task: Task) -> Task:
        timeout = settings.BACKSERV["STUDIO_SYNC_TIMEOUT"]
        task = task_wait_finished(task_id=task.pk, timeout=timeout)
        if task.is_terminal:
            return task
        # The caller is told it failed, so the job must not go on using a GPU.
        try:
            task = services.task_cancel(task=task)
        except StateConflict:
            task.refresh_from_db()
            if task.state == TaskState.SUCCESS:
                return task
        raise StudioError(
            f"Generation failed: not finished after {timeout:g} s (cancelled)", code="API_TIMEOUT", status_code=500
        )


class TextToImageRequest(serializers.Serializer):
    prompt = serializers.CharField(required=False, allow_blank=True, default="")
    negativePrompt = serializers.CharField(required=False, allow_blank=True, default="")
    width = serializers.IntegerField(required=False)
    height = serializers.IntegerField(required=False)
    steps = serializers.IntegerField(required=False)
    cfgScale = serializers.FloatField(required=False)
    seed = serializers.IntegerField(required=False, allow_null=True)


class TextToImageView(GenerateView):
    kind = StudioGeneration.Kind.TEXT_TO_IMAGE
    task_type = "image_creation"
    request_serializer = TextToImageRequest

    def params(self, request: Request, data: dict[str, Any]) -> dict[str, Any]:
        _require_prompt(data["prompt"])
        defaults = generation_defaults_effective(user=request.user)
        return {
            "prompt": data["prompt"],
            "negative_prompt": data["negativePrompt"],
            "width": data.get("width", defaults["width"]),
            "height": data.get("height", defaults["height"]),
            "steps": data.get("steps", defaults["steps"]),
            "guidance_scale": data.get("cfgScale", defaults["cfg_scale"]),
            "seed": data.get("seed"),
        }


class ImageToImageRequest(serializers.Serializer):
    seedImage = serializers.JSONField()
    prompt = serializers.CharField(required=False, allow_blank=True, default="")
    strength = serializers.FloatField(required=False, default=0.7)
    steps = serializers.IntegerField(required=False)
    cfgScale = serializers.FloatField(required=False)
    seed = serializers.IntegerField(required=False, allow_null=True)


class ImageToImageView(GenerateView):
    kind = StudioGeneration.Kind.IMAGE_TO_IMAGE
    task_type = "image_to_image"
    request_serializer = ImageToImageRequest
    image_field = "seedImage"

    def params(self, request: Request, data: dict[str, Any]) -> dict[str, Any]:
        _require_prompt(data["prompt"])
        defaults = generation_defaults_effective(user=request.user)
        return {
            "image": data["image"],
            "prompt": data["prompt"],
            "strength": data["strength"],
            "steps": data.get("steps", defaults["steps"]),
            "guidance_scale": data.get("cfgScale", defaults["cfg_scale"]),
            "seed": data.get("seed"),
        }


class UpscaleRequest(serializers.Serializer):
    imagePath = serializers.JSONField()
    scale = serializers.IntegerField(required=False, default=2)


class UpscaleView(GenerateView):
    kind = StudioGeneration.Kind.UPSCALE
    task_type = "image_upscale"
    request_serializer = UpscaleRequest
    image_field = "imagePath"

    def params(self, request: Request, data: dict[str, Any]) -> dict[str, Any]:
        return {"image": data["image"], "scale_factor": data["scale"]}


class HistoryQuery(serializers.Serializer):
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, default=50)
    offset = serializers.IntegerField(required=False, min_value=0, default=0)
    type = serializers.ChoiceField(choices=["image", "video"], required=False)


class HistoryListView(StudioView):
    def get(self, request: Request) -> Response:
        query = HistoryQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = studio_history(owner=request.user)
        if "type" in query.validated_data:
            videos = {"task__task_type__in": VIDEO_TASK_TYPES}
            rows = rows.filter(**videos) if query.validated_data["type"] == "video" else rows.exclude(**videos)
        start = query.validated_data["offset"]
        page = rows[start : start + query.validated_data["limit"]]
        return Response(
            {
                "success": True,
                "data": [generation_body(generation, request) for generation in page],
                "total": rows.count(),
            }
        )


def _owned_generation(request: Request, generation_id: str) -> StudioGeneration:
    generation = (
        studio_history(owner=request.user).filter(pk=int(generation_id)).first() if generation_id.isdigit() else None
    )
    if generation is None:
        raise StudioError("Generation not found", code="NOT_FOUND", status_code=404)
    return generation


class HistoryDetailView(StudioView):
    def get(self, request: Request, generation_id: str) -> Response:
        generation = _owned_generation(request, generation_id)
        return Response({"success": True, "data": generation_body(generation, request, detail=True)})

    def delete(self, request: Request, generation_id: str) -> Response:
        services.task_delete(task=_owned_generation(request, generation_id).task)
        return Response({"success": True, "message": "Generation deleted"})
