"""Webhook URLs obey the private-address rules of every client-chosen URL (the rule
itself is tested with the input URLs in tests/generation/test_inputs.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from backserv_site import netsafety
from tasks.models import Task
from tasks.webhooks import webhook_deliver, webhook_delivery_create
from tests.client.conftest import Receiver


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


def test_an_allowed_network_lets_a_webhook_through(
    db: None, client: APIClient, settings: Any, receiver: Receiver, job_body: Callable[..., dict]
) -> None:
    refused = client.post("/api/v1/tasks", job_body(webhook=receiver.url), format="json")
    settings.BACKSERV = {**settings.BACKSERV, "ALLOWED_NETWORKS": ["127.0.0.0/8"]}
    elsewhere = client.post("/api/v1/tasks", job_body(webhook="http://10.1.2.3/hook"), format="json")
    response = client.post("/api/v1/tasks", job_body(webhook=receiver.url), format="json")
    assert response.status_code == 202, response.content
    delivery = webhook_delivery_create(task_id=response.json()["task_id"], event="completed")
    assert delivery is not None

    webhook_deliver(delivery_id=delivery.pk)

    assert refused.status_code == 400
    assert elsewhere.status_code == 400
    delivery.refresh_from_db()
    assert delivery.state == "delivered", [a.error for a in delivery.attempt_log.all()]
    assert len(receiver.wait_for(1)) == 1


def test_a_webhook_refused_when_sent_is_not_retried(
    db: None, client: APIClient, settings: Any, receiver: Receiver, job_body: Callable[..., dict]
) -> None:
    settings.BACKSERV = {**settings.BACKSERV, "ALLOWED_NETWORKS": ["127.0.0.0/8"]}
    response = client.post("/api/v1/tasks", job_body(webhook=receiver.url), format="json")
    delivery = webhook_delivery_create(task_id=response.json()["task_id"], event="completed")
    assert delivery is not None
    settings.BACKSERV = {**settings.BACKSERV, "ALLOWED_NETWORKS": []}

    webhook_deliver(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert delivery.state == "failed"
    assert delivery.attempt_log.get().error.startswith("refused: ")
    assert receiver.received == []


def test_check_url_keeps_the_path_and_query(settings: Any) -> None:
    settings.BACKSERV = {**settings.BACKSERV, "ALLOW_PRIVATE_URLS": True}

    target = netsafety.check_url("http://127.0.0.1:8080/a/b?x=1")

    assert (target.host, target.port, target.path, target.addresses) == ("127.0.0.1", 8080, "/a/b?x=1", ("127.0.0.1",))
