"""The OpenAPI schema validates and the docs pages serve their assets locally."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    output = tmp_path_factory.mktemp("schema") / "schema.yaml"
    call_command("spectacular", "--file", str(output))
    return yaml.safe_load(output.read_text())


def test_the_event_stream_is_documented_as_one_and_its_errors_as_json(schema: dict[str, Any]) -> None:
    responses = schema["paths"]["/api/v1/tasks/{task_id}/events"]["get"]["responses"]

    assert list(responses["200"]["content"]) == ["text/event-stream"]
    stream = responses["200"]["content"]["text/event-stream"]
    assert stream["schema"]["type"] == "string" and "Server-Sent Events" in stream["schema"]["description"]
    for status in ("401", "404"):
        assert list(responses[status]["content"]) == ["application/json"], status


def test_the_date_filters_are_documented_as_refusing_an_empty_value(schema: dict[str, Any]) -> None:
    documented = {
        ("/api/v1/tasks", "submitted_after"): "date-time",
        ("/api/v1/tasks", "submitted_before"): "date-time",
        ("/api/v1/stats/tasks", "date"): "date",
        ("/api/v1/stats/hourly", "date"): "date",
        ("/api/v1/stats/servers/{server_id}", "date"): "date",
    }
    for (path, name), date_format in documented.items():
        operation = schema["paths"][path]["get"]
        (parameter,) = [parameter for parameter in operation["parameters"] if parameter["name"] == name]
        assert parameter["schema"]["format"] == date_format, (path, name)
        assert "empty or malformed value is a 400" in parameter["description"], (path, name)
        assert "400" in operation["responses"], path


def test_request_bodies_allow_no_unknown_fields_and_batch_items_are_submit_bodies(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for body in operation.get("requestBody", {}).get("content", {}).values():
                name = body["schema"]["$ref"].rsplit("/", 1)[-1]
                assert components[name]["additionalProperties"] is False, f"{method} {path}"

    items = components["BatchSubmitRequest"]["properties"]["tasks"]["items"]
    assert items == {"$ref": "#/components/schemas/TaskSubmitRequest"}


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


TAGS = ["jobs", "uploads", "tokens", "webhooks", "task types", "usage", "servers", "stats"]


def test_the_operations_read_as_a_table_of_contents_by_tag(schema: dict[str, Any]) -> None:
    assert [tag["name"] for tag in schema["tags"]] == TAGS
    assert all(tag["description"] and "\n" not in tag["description"] for tag in schema["tags"])
    tagged = {
        f"{method.upper()} {path}": operation["tags"]
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    }
    assert {name: tags for name, tags in tagged.items() if len(tags) != 1 or tags[0] not in TAGS} == {}
    expected = {
        "POST /api/v1/tasks": "jobs",
        "GET /api/v1/tasks/{task_id}/events": "jobs",
        "GET /api/v1/tasks/{task_id}/webhooks": "webhooks",
        "POST /api/v1/webhook-deliveries/{delivery_id}/redeliver": "webhooks",
        "GET /api/v1/uploads": "uploads",
        "POST /api/v1/tokens": "tokens",
        "GET /api/v1/task-types": "task types",
        "GET /api/v1/usage": "usage",
        "GET /api/v1/stats/load-balancer": "servers",
        "POST /api/v1/servers": "servers",
        "GET /api/v1/stats/tasks": "stats",
        "GET /api/v1/stats/servers/{server_id}": "stats",
    }
    assert {name: tagged[name][0] for name in expected} == expected


@pytest.mark.django_db
def test_the_distributed_document_lists_none_of_our_tags(anonymous_client: APIClient) -> None:
    document = anonymous_client.get("/openapi.json").json()
    assert [tag["name"] for tag in document.get("tags", []) if tag["name"] in TAGS] == []
