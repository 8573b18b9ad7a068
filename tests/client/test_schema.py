"""The OpenAPI schema validates and the docs pages serve their assets locally."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from rest_framework.test import APIClient


def test_the_schema_validates_without_warnings(tmp_path: Path) -> None:
    output = tmp_path / "schema.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(output))

    schema = yaml.safe_load(output.read_text())
    assert "Error" in schema["components"]["schemas"]
    paths = schema["paths"]
    for path in (
        "/api/v1/tasks",
        "/api/v1/tasks/batch",
        "/api/v1/tasks/{task_id}/events",
        "/api/v1/tasks/{task_id}/webhooks",
        "/api/v1/webhook-secret",
        "/api/v1/webhook-deliveries/{delivery_id}/redeliver",
    ):
        assert path in paths, path
    for path, operations in paths.items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "401" in responses, f"{method} {path} documents no 401"
            assert responses["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
            success = {code: response for code, response in responses.items() if code.startswith("2")}
            bodies = [body for response in success.values() for body in response.get("content", {}).values()]
            if not bodies:
                # Only "No Content" answers may go without a body, and so without an example.
                assert set(success) == {"204"}, f"{method} {path} documents no success body"
                continue
            assert any("examples" in body for body in bodies), f"{method} {path} has no example"


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_the_docs_pages_use_local_assets(anonymous_client: APIClient, page: str) -> None:
    response = anonymous_client.get(page)

    assert response.status_code == 200
    html = response.content.decode()
    assert "drf_spectacular_sidecar" in html
    assert "cdn" not in html.lower()


@pytest.mark.django_db
def test_the_schema_is_served(anonymous_client: APIClient) -> None:
    response = anonymous_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    assert response.json()["info"]["title"] == "Back.Serv API"
