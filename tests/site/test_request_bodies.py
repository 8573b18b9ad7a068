"""Bodies no route can take answer 4xx on every POST route, the document routes too:
too large a 413 naming the limit, nested too deep a 400 naming the depth."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from backserv_site.parsers import MAX_JSON_DEPTH

ROUTES = [
    "/api/v1/tasks",
    "/api/v1/tasks/batch",
    "/api/v1/tokens",
    "/api/v1/servers",
    "/submit_task",
    "/api/generate/text-to-image",
    "/api/task",
    "/api/servers",
]


@pytest.mark.parametrize("route", ROUTES)
def test_a_body_over_the_limit_is_a_413_naming_it(staff_client: APIClient, route: str) -> None:
    body = json.dumps({"task_type": "image_creation", "params": {"prompt": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE}})
    response = staff_client.post(route, body, content_type="application/json")
    assert response.status_code == 413, response.content
    # The document routes word errors in their own dialect; each names the limit.
    assert str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) in response.content.decode()
    if route.startswith("/api/v1/"):
        assert response.json()["code"] == "request_too_large"


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_a_body_nested_too_deep_is_a_400_naming_the_depth(staff_client: APIClient, route: str, depth: int) -> None:
    response = staff_client.post(route, "[" * depth + "]" * depth, content_type="application/json")
    assert response.status_code == 400, response.content
    assert f"deeper than {MAX_JSON_DEPTH} levels" in response.content.decode()


def test_a_body_at_the_depth_limit_is_parsed(client: APIClient) -> None:
    nested: object = "deep"
    for _ in range(MAX_JSON_DEPTH - 3):
        nested = [nested]
    body = {"task_type": "image_creation", "params": {"prompt": nested}}
    response = client.post("/api/v1/tasks", body, format="json")
    # Parsed, then refused by the params' own check (a prompt is text).
    assert response.status_code == 400
    assert "params.prompt" in response.json()["fields"]
