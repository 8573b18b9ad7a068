"""The Python client against a live server: run and download, events, waits, cancel and
retry, uploads, idempotent submits, errors, and webhook verification."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from backserv_client import ApiError, Client, Job, WebhookVerificationError, verify_webhook
from PIL import Image
from standardwebhooks import Webhook

from tests.client.conftest import Receiver
from tests.clients.conftest import SMALL_PARAMS, LiveServer, Proxy, make_png

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def client(backserv_server: LiveServer) -> Iterator[Client]:
    with Client(backserv_server.url, backserv_server.token) as client:
        yield client


def slow_job(client: Client) -> Job:
    return client.submit("image_creation", {"prompt": "slow", "steps": 600, "width": 256, "height": 256}, priority=0)


def test_run_returns_the_finished_job_whose_outputs_download(client: Client, tmp_path: Path) -> None:
    job = client.run("image_creation", prompt="a lighthouse", **SMALL_PARAMS)

    assert (job.state, job.succeeded, job.error) == ("SUCCESS", True, None)
    assert job.params["steps"] == 4 and job.completed_at is not None
    (output,) = job.outputs
    assert (output.content_type, output.width, output.height) == ("image/png", 64, 64)
    (path,) = job.download(tmp_path / "one.png")
    assert path == tmp_path / "one.png"
    with Image.open(path) as image:
        assert image.size == (64, 64)
    assert path.stat().st_size == output.size
    assert client.download(job.id, tmp_path / "folder") == [tmp_path / "folder" / f"{job.id}-0.png"]


def test_the_url_and_token_come_from_the_environment_unless_given(
    backserv_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKSERV_URL", backserv_server.url)
    monkeypatch.setenv("BACKSERV_TOKEN", backserv_server.token)
    with Client() as from_env:
        assert from_env.list_jobs(limit=1) is not None
    monkeypatch.setenv("BACKSERV_TOKEN", "bs_00000000_wrong")
    with Client() as wrong, pytest.raises(ApiError) as refused:
        wrong.list_jobs()
    assert (refused.value.status, refused.value.code) == (401, "authentication_failed")
    with Client(token=backserv_server.token) as given:
        assert given.list_jobs(limit=1) is not None


def test_a_path_param_is_uploaded_first(client: Client, tmp_path: Path) -> None:
    source = make_png(tmp_path / "in.png", size=(80, 64))

    job = client.run("image_to_image", image=source, prompt="hello", steps=2)

    assert job.succeeded, job.error
    assert job.params["image"].startswith("upload:")
    assert (job.outputs[0].width, job.outputs[0].height) == (80, 64)
    upload = client.upload(source)
    assert upload.reference == f"upload:{upload.id}" and (upload.width, upload.height) == (80, 64)


def test_stream_gives_each_event_once_and_resumes_after_an_id(client: Client) -> None:
    job = client.submit("image_creation", {"prompt": "events", **SMALL_PARAMS})

    events = list(client.stream(job.id))

    assert events[0].type == "submitted" and events[0].state == "PENDING"
    assert events[-1].type == "succeeded" and events[-1].terminal
    assert [event.id for event in events] == sorted({event.id for event in events})
    progress = [event for event in events if event.type == "progress"]
    assert progress and progress[-1].step == progress[-1].total == 4
    assert list(client.stream(job.id, last_event_id=events[1].id)) == events[2:]


def test_wait_follows_a_job_to_its_end_and_times_out_without_it(client: Client) -> None:
    quick = client.submit("image_creation", {"prompt": "quick", **SMALL_PARAMS})
    seen = []
    assert client.wait(quick.id, on_event=seen.append).state == "SUCCESS"
    assert seen[-1].type == "succeeded"

    slow = slow_job(client)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        client.wait(slow.id, timeout=0.5)
    assert time.monotonic() - started < 10
    cancelled = client.cancel(slow.id)
    assert cancelled.state == "REVOKED" or cancelled.cancel_requested
    assert client.wait(slow.id, timeout=120).state == "REVOKED"

    retried = client.retry(slow.id)
    assert retried.state in {"PENDING", "RECEIVED", "STARTED"}
    client.cancel(slow.id)
    assert client.wait(slow.id, timeout=120).state == "REVOKED"


def test_a_submit_whose_answer_was_lost_is_sent_again_and_makes_one_job(
    backserv_server: LiveServer, proxy: Proxy
) -> None:
    prompt = f"lost answer {uuid.uuid4()}"
    proxy.lose_next_answer("POST", "/api/v1/tasks")

    with Client(proxy.url, backserv_server.token) as client:
        job = client.submit("image_creation", {"prompt": prompt, **SMALL_PARAMS})

    first, second = proxy.sent("POST", "/api/v1/tasks")
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.body == second.body
    jobs = backserv_server.api("GET", "/api/v1/tasks", params={"limit": 100}).json()["results"]
    assert [row["task_id"] for row in jobs if row["params"].get("prompt") == prompt] == [job.id]


def test_an_idempotency_key_of_your_own_finds_the_same_job(client: Client) -> None:
    key = f"order-{uuid.uuid4()}"
    params = {"prompt": "once", **SMALL_PARAMS}

    first = client.submit("image_creation", params, idempotency_key=key)
    again = client.submit("image_creation", params, idempotency_key=key)

    assert again.id == first.id
    with pytest.raises(ApiError) as reused:
        client.submit("image_creation", {**params, "prompt": "twice"}, idempotency_key=key)
    assert (reused.value.status, reused.value.code) == (409, "idempotency_key_reused")


def test_refusals_raise_api_errors_with_the_code_and_fields(client: Client, backserv_server: LiveServer) -> None:
    with pytest.raises(ApiError) as invalid:
        client.submit("image_creation", {"prompt": "x", "steps": 100000})
    assert (invalid.value.status, invalid.value.code) == (400, "invalid_params")
    assert invalid.value.fields == {"params.steps": ["Must be at most 1000, got 100000."]}

    job = client.submit("image_creation", {"prompt": "mine", **SMALL_PARAMS})
    with Client(backserv_server.url, backserv_server.other_token) as other, pytest.raises(ApiError) as hidden:
        other.get(job.id)
    assert (hidden.value.status, hidden.value.code) == (404, "not_found")
    client.wait(job.id, timeout=120)


def test_verify_webhook_accepts_the_servers_signature_and_refuses_tampered_or_old_ones(
    client: Client, receiver: Receiver
) -> None:
    job = client.run("image_creation", prompt="hooked", webhook=receiver.url, **SMALL_PARAMS)
    (hook,) = receiver.wait_for(1)
    secret = client.webhook_secret()

    payload = verify_webhook(secret, hook.headers, hook.body)

    assert (payload["task_id"], payload["state"]) == (job.id, "SUCCESS")
    capitalised = {name.title(): value for name, value in hook.headers.items()}
    assert verify_webhook(secret, capitalised, hook.body.decode()) == payload
    refusals = {
        "altered body": (secret, hook.headers, hook.body.replace(b"SUCCESS", b"FAILURE")),
        "wrong secret": ("whsec_" + "A" * 44, hook.headers, hook.body),
        "altered signature": (secret, {**hook.headers, "webhook-signature": "v1,AAAA"}, hook.body),
        "no signature": (secret, {k: v for k, v in hook.headers.items() if k != "webhook-signature"}, hook.body),
    }
    for name, (key, headers, body) in refusals.items():
        with pytest.raises(WebhookVerificationError):
            verify_webhook(key, headers, body)
            pytest.fail(f"accepted with {name}")


@pytest.mark.parametrize(("age", "accepted"), [(timedelta(0), True), (timedelta(minutes=10), False)])
def test_verify_webhook_refuses_a_replay_of_an_old_delivery(age: timedelta, accepted: bool) -> None:
    """Signed by the Standard Webhooks reference library, not by our own code."""
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = json.dumps({"task_id": "t", "state": "SUCCESS"})
    sent_at = datetime.now(UTC) - age
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg_1", sent_at, body),
    }

    if accepted:
        assert verify_webhook(secret, headers, body) == {"task_id": "t", "state": "SUCCESS"}
    else:
        with pytest.raises(WebhookVerificationError, match="outside the 300s tolerance"):
            verify_webhook(secret, headers, body)
