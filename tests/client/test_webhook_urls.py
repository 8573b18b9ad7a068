"""Webhook URLs obey the private-address rules of every client-chosen URL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from backserv_site import netsafety
from tasks.models import Task


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ],
)
def test_it_refuses_a_webhook_on_a_private_address(
    db: None, client: APIClient, job_body: Callable[..., dict], url: str
) -> None:
    response = client.post("/api/v1/tasks", job_body(webhook=url), format="json")

    assert response.status_code == 400, response.content
    assert "webhook" in response.json()["fields"]
    assert not Task.objects.exists()


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("ftp://example.com/hook", "webhook"),
        ("not a url", "webhook"),
        ("http://user:pw@127.0.0.1/hook", "webhook"),
    ],
)
def test_it_refuses_a_malformed_webhook(
    db: None, client: APIClient, allow_loopback_urls: None, job_body: Callable[..., dict], url: str, field: str
) -> None:
    response = client.post("/api/v1/tasks", job_body(webhook=url), format="json")

    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_it_refuses_an_unknown_webhook_event(
    db: None, client: APIClient, allow_loopback_urls: None, job_body: Callable[..., dict]
) -> None:
    response = client.post(
        "/api/v1/tasks", job_body(webhook="http://127.0.0.1/h", webhook_events=["finished"]), format="json"
    )

    assert response.status_code == 400
    assert "webhook_events.0" in response.json()["fields"]


def test_a_setting_allows_loopback_for_tests(
    db: None, client: APIClient, allow_loopback_urls: None, job_body: Callable[..., dict]
) -> None:
    response = client.post("/api/v1/tasks", job_body(webhook="http://127.0.0.1:9/hook"), format="json")

    assert response.status_code == 202
    assert response.json()["webhook"] == "http://127.0.0.1:9/hook"


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("192.168.1.1", False),
        ("::ffff:10.0.0.1", False),
        ("0.0.0.0", False),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert netsafety.is_public_address(address) is public


def test_check_url_keeps_the_path_and_query(settings: Any) -> None:
    settings.BACKSERV = {**settings.BACKSERV, "ALLOW_PRIVATE_URLS": True}

    target = netsafety.check_url("http://127.0.0.1:8080/a/b?x=1")

    assert (target.host, target.port, target.path, target.addresses) == ("127.0.0.1", 8080, "/a/b?x=1", ("127.0.0.1",))
