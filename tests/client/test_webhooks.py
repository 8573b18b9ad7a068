"""Signed webhooks, sent to a real local HTTP receiver by the in-process worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient
from standardwebhooks import Webhook, WebhookVerificationError

from tasks.models import WebhookDelivery
from tasks.webhooks import webhook_deliver, webhook_delivery_create
from tests.client.conftest import Receiver
from tests.conftest import InProcessWorker

pytestmark = pytest.mark.usefixtures("allow_loopback_urls")


def wait_settled(task_id: str, count: int, timeout: float = 30) -> list[WebhookDelivery]:
    deadline = time.monotonic() + timeout
    while True:
        deliveries = list(WebhookDelivery.objects.filter(task_id=task_id).order_by("created_at"))
        if len(deliveries) >= count and all(d.state != WebhookDelivery.State.PENDING for d in deliveries):
            return deliveries
        assert time.monotonic() < deadline, [(d.event, d.state, d.attempts) for d in deliveries]
        time.sleep(0.02)


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """As a receiver would check it: with the Standard Webhooks reference library, not
    a copy of our signer (which would agree with our mistakes)."""
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


def submit(client: APIClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/v1/tasks", body, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def test_it_sends_signed_start_and_completed_webhooks_with_the_job(
    worker: InProcessWorker, client: APIClient, receiver: Receiver, job_body: Callable[..., dict]
) -> None:
    secret = client.get("/api/v1/webhook-secret").json()["secret"]
    job = submit(client, job_body(webhook=receiver.url, webhook_events=["start"]))
    worker.wait_for(job["task_id"])

    deliveries = wait_settled(job["task_id"], 2)
    hooks = receiver.wait_for(2)

    assert [hook.headers["webhook-event"] for hook in hooks] == ["start", "completed"]
    assert all(verify(secret, hook.headers, hook.body) for hook in hooks)
    assert not verify(secret, hooks[0].headers, hooks[0].body + b" ")
    assert hooks[1].json()["task_id"] == job["task_id"]
    assert hooks[1].json()["state"] == "SUCCESS"
    assert hooks[1].headers["webhook-id"] == str(deliveries[1].pk)
    assert [d.state for d in deliveries] == ["delivered", "delivered"]


def test_a_rotated_secret_signs_later_webhooks(
    worker: InProcessWorker, client: APIClient, receiver: Receiver, job_body: Callable[..., dict]
) -> None:
    old = client.get("/api/v1/webhook-secret").json()["secret"]
    rotated = client.post("/api/v1/webhook-secret")
    new = rotated.json()["secret"]
    job = submit(client, job_body(webhook=receiver.url))
    worker.wait_for(job["task_id"])
    wait_settled(job["task_id"], 1)

    (hook,) = receiver.wait_for(1)

    assert rotated.status_code == 200 and new != old and new.startswith("whsec_")
    assert verify(new, hook.headers, hook.body)
    assert not verify(old, hook.headers, hook.body)


def test_it_retries_after_a_500_until_the_receiver_takes_it(
    worker: InProcessWorker, client: APIClient, receiver: Receiver, job_body: Callable[..., dict]
) -> None:
    receiver.statuses = [500, 503, 200]
    job = submit(client, job_body(webhook=receiver.url))
    worker.wait_for(job["task_id"])

    (delivery,) = wait_settled(job["task_id"], 1)
    hooks = receiver.wait_for(3)

    assert delivery.state == "delivered"
    assert [a.status_code for a in delivery.attempt_log.all()] == [500, 503, 200]
    assert len({hook.headers["webhook-id"] for hook in hooks}) == 1
    listed = client.get(f"/api/v1/tasks/{job['task_id']}/webhooks").json()
    assert [a["status_code"] for a in listed[0]["attempt_log"]] == [500, 503, 200]
    assert listed[0]["attempt_log"][0]["error"] == "HTTP 500"


@pytest.mark.parametrize("status", [400, 404, 410])
def test_a_4xx_stops_the_delivery(
    worker: InProcessWorker, client: APIClient, receiver: Receiver, job_body: Callable[..., dict], status: int
) -> None:
    receiver.statuses = [status, 200]
    job = submit(client, job_body(webhook=receiver.url))
    worker.wait_for(job["task_id"])

    (delivery,) = wait_settled(job["task_id"], 1)

    assert delivery.state == "failed"
    assert delivery.attempts == 1
    assert delivery.attempt_log.get().error == f"HTTP {status}"


@pytest.mark.parametrize("status", [408, 429])
def test_408_and_429_are_retried(
    worker: InProcessWorker, client: APIClient, receiver: Receiver, job_body: Callable[..., dict], status: int
) -> None:
    receiver.statuses = [status, 200]
    job = submit(client, job_body(webhook=receiver.url))
    worker.wait_for(job["task_id"])

    (delivery,) = wait_settled(job["task_id"], 1)

    assert delivery.state == "delivered"
    assert delivery.attempts == 2


def test_a_receiver_that_is_down_is_retried_then_given_up_after_the_window(
    stopped_worker: InProcessWorker, client: APIClient, settings: Any, job_body: Callable[..., dict]
) -> None:
    settings.BACKSERV = {**settings.BACKSERV, "WEBHOOK_RETRY_WINDOW_SECONDS": 0.3}
    job = submit(client, job_body(webhook="http://127.0.0.1:9/closed-port"))
    delivery = webhook_delivery_create(task_id=job["task_id"], event="completed")
    assert delivery is not None

    for _ in range(20):
        webhook_deliver(delivery_id=delivery.pk)
        delivery.refresh_from_db()
        if delivery.state != "pending":
            break
        time.sleep(0.06)

    assert delivery.state == "failed"
    assert delivery.attempts > 1
    assert all(a.error.startswith("connection error") for a in delivery.attempt_log.all())


def test_the_owner_can_redeliver_and_nobody_else_can(
    worker: InProcessWorker,
    client: APIClient,
    other_client: APIClient,
    anonymous_client: APIClient,
    receiver: Receiver,
    job_body: Callable[..., dict],
) -> None:
    receiver.statuses = [400, 200]
    job = submit(client, job_body(webhook=receiver.url))
    worker.wait_for(job["task_id"])
    (delivery,) = wait_settled(job["task_id"], 1)

    assert other_client.post(f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver").status_code == 404
    assert anonymous_client.post(f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver").status_code == 401
    assert client.post("/api/v1/webhook-deliveries/not-an-id/redeliver").status_code == 404
    response = client.post(f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver")

    assert response.status_code == 202
    assert response.json()["state"] == "pending"
    (delivery,) = wait_settled(job["task_id"], 1)
    assert delivery.state == "delivered"
    assert [a.status_code for a in delivery.attempt_log.all()] == [400, 200]
    hooks = receiver.wait_for(2)
    assert hooks[0].headers["webhook-id"] == hooks[1].headers["webhook-id"]


def test_the_deliveries_list_is_the_owners_only(
    stopped_worker: InProcessWorker,
    client: APIClient,
    other_client: APIClient,
    anonymous_client: APIClient,
    receiver: Receiver,
    job_body: Callable[..., dict],
) -> None:
    job = submit(client, job_body(webhook=receiver.url))

    assert client.get(f"/api/v1/tasks/{job['task_id']}/webhooks").json() == []
    assert other_client.get(f"/api/v1/tasks/{job['task_id']}/webhooks").status_code == 404
    assert anonymous_client.get(f"/api/v1/tasks/{job['task_id']}/webhooks").status_code == 401


def test_the_webhook_secret_needs_a_token(anonymous_client: APIClient, client: APIClient) -> None:
    assert anonymous_client.get("/api/v1/webhook-secret").status_code == 401
    assert anonymous_client.post("/api/v1/webhook-secret").status_code == 401
    assert client.get("/api/v1/webhook-secret").json() == client.get("/api/v1/webhook-secret").json()


def test_rotating_the_secret_and_redelivering_refuse_body_fields(
    client: APIClient, job_body: Callable[..., dict]
) -> None:
    secret = client.get("/api/v1/webhook-secret").json()["secret"]
    job = submit(client, job_body(webhook="http://127.0.0.1:9/hook"))
    delivery = webhook_delivery_create(task_id=job["task_id"], event="completed")
    assert delivery is not None

    rotated = client.post("/api/v1/webhook-secret", {"secret": "whsec_mine"}, format="json")
    redelivered = client.post(f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver", {"url": "x"}, format="json")

    assert rotated.status_code == 400 and list(rotated.json()["fields"]) == ["secret"]
    assert redelivered.status_code == 400 and list(redelivered.json()["fields"]) == ["url"]
    assert client.get("/api/v1/webhook-secret").json()["secret"] == secret
    assert client.post("/api/v1/webhook-secret", {}, format="json").status_code == 200
