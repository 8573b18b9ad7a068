"""/openapi.json (the distributed-system document's routes, as OpenAPI 3) and /docs:
one Swagger UI, assets served locally, with a selector between that description and
Back.Serv's own /api/v1 schema (the task-manager document also serves /docs)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView
from rest_framework.request import Request
from rest_framework.response import Response

DOCUMENT_TITLE = "Back.Serv: distributed task-processing API"

openapi_view = SpectacularJSONAPIView.as_view(
    urlconf="tasks.compat.distributed.routes",
    custom_settings={
        "TITLE": DOCUMENT_TITLE,
        "DESCRIPTION": (
            "The routes of the distributed task-processing system's API reference, served by Back.Serv over "
            "its own jobs and GPU servers: tasks, servers (admin role), statistics and the load balancer. "
            "Authenticate with `Authorization: Bearer <JWT>` (or a Back.Serv API token). Errors are "
            "`{error, details}`. Every response carries X-RateLimit-Limit/Remaining/Reset. Back.Serv's own "
            "API is at /api/schema/."
        ),
        "VERSION": settings.VERSION,
        # The hook that keeps these routes out of Back.Serv's own schema.
        "PREPROCESSING_HOOKS": [],
    },
)


class DocumentsSwaggerView(SpectacularSwaggerView):
    title = "Back.Serv API documentation"
    url_name = "schema"

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().get(request, *args, **kwargs)
        definitions = [
            {"url": reverse("schema"), "name": DOCUMENT_TITLE},
            {"url": reverse("api-schema"), "name": "Back.Serv /api/v1 (task-manager routes)"},
        ]
        # Swagger UI's standalone layout shows the selector; its preset is a global of
        # the locally served swagger-ui-standalone-preset.js, hence JavaScript, not JSON.
        response.data["settings"] = (
            f'{{"urls": {json.dumps(definitions)}, "urls.primaryName": {json.dumps(DOCUMENT_TITLE)}, '
            '"layout": "StandaloneLayout", "presets": [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset]}'
        )
        return response
