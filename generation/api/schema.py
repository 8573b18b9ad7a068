"""OpenAPI examples of the uploads API."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample

UPLOAD_EXAMPLE = {
    "id": "5a7c9e1b-3d2f-4a6b-8c0d-2e4f6a8b0c1d",
    "reference": "upload:5a7c9e1b-3d2f-4a6b-8c0d-2e4f6a8b0c1d",
    "content_type": "image/png",
    "size": 482113,
    "width": 512,
    "height": 512,
    "created_at": "2026-01-01T11:58:00Z",
}

UPLOAD_EXAMPLES = [
    OpenApiExample("a PNG", value=UPLOAD_EXAMPLE, response_only=True, status_codes=["200", "201"]),
]
UPLOAD_LIST_EXAMPLES = [OpenApiExample("your uploads", value=[UPLOAD_EXAMPLE], response_only=True)]
