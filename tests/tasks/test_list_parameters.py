"""The list routes' query parameters: a bad one is a 400 naming it, never a silent
default and never a 500 (cases the API fuzzing found)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient


@pytest.mark.parametrize("route", ["/api/v1/tasks", "/api/v1/tokens", "/api/v1/uploads"])
@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=1001", "limit"), ("limit=ten", "limit"), ("offset=-1", "offset")],
)
def test_it_refuses_a_bad_page(client: APIClient, route: str, query: str, field: str) -> None:
    response = client.get(f"{route}?{query}")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert list(body["fields"]) == [field]


def test_a_page_within_bounds_is_served(client: APIClient, submit: Callable[..., dict[str, Any]]) -> None:
    for _ in range(3):
        submit()

    response = client.get("/api/v1/tasks?limit=2&offset=1")

    assert response.status_code == 200
    assert response.json()["count"] == 3
    assert len(response.json()["results"]) == 2


def test_a_moment_with_an_offset_postgres_refuses_is_read_as_utc(client: APIClient) -> None:
    response = client.get("/api/v1/tasks", {"submitted_after": "2026-01-01T00:00:00+23:05"})

    assert response.status_code == 200


def test_it_refuses_a_moment_with_no_utc_equivalent(client: APIClient) -> None:
    response = client.get("/api/v1/tasks", {"submitted_after": "0001-01-01T00:30:00+01:00"})

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["submitted_after"]


@pytest.mark.parametrize("name", ["submitted_after", "submitted_before"])
@pytest.mark.parametrize("value", ["", " ", "yesterday", "2026-13-01T00:00:00Z"])
def test_it_refuses_an_empty_or_malformed_date_filter_naming_it(client: APIClient, name: str, value: str) -> None:
    response = client.get(f"/api/v1/tasks?{name}={value}")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert list(body["fields"]) == [name]
    assert body["detail"].startswith(f"{name}: ")
