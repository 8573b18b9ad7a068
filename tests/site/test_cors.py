"""CORS (django-cors-headers): no headers unless CORS_ALLOWED_ORIGINS names the origin."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

APP = "https://app.example.com"


def _preflight(client: APIClient, origin: str) -> Any:
    return client.options(
        "/api/v1/tasks",
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, idempotency-key",
    )


def test_it_sends_no_cors_headers_when_no_origin_is_configured(client: APIClient) -> None:
    response = client.get("/api/v1/tasks", HTTP_ORIGIN=APP)
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Origin" not in _preflight(APIClient(), APP).headers


def test_a_configured_origin_may_call_the_api_and_read_its_headers(client: APIClient, settings: Any) -> None:
    settings.CORS_ALLOWED_ORIGINS = [APP]

    response = client.get("/api/v1/tasks", HTTP_ORIGIN=APP)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert "origin" in response.headers["Vary"].lower()
    exposed = {name.strip().lower() for name in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"x-ratelimit-remaining", "retry-after", "idempotent-replayed"} <= exposed
    # Tokens, not cookies: a page elsewhere cannot ride an admin's session.
    assert "Access-Control-Allow-Credentials" not in response.headers

    preflight = _preflight(APIClient(), APP)
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == APP
    allowed = {name.strip() for name in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "idempotency-key", "prefer", "last-event-id"} <= allowed


def test_an_origin_not_configured_gets_no_cors_headers(client: APIClient, settings: Any) -> None:
    settings.CORS_ALLOWED_ORIGINS = [APP]

    response = client.get("/api/v1/tasks", HTTP_ORIGIN="https://evil.example.net")
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Origin" not in _preflight(APIClient(), "https://evil.example.net").headers
