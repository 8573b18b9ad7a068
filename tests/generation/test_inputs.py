"""Fetching input images from URLs against a real local HTTP server, and the checks on
what comes back. Loopback is reachable only where the test allows it, as in production."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image
from rest_framework.test import APIClient

from backserv_site.netsafety import address_refusal
from tasks.models import Task, TaskState
from tests.generation.conftest import ImageServer, output_image, png_bytes

RunJob = Callable[..., Task]


def upscale(image: str) -> dict[str, Any]:
    return {"image": image, "scale_factor": 2, "method": "lanczos"}


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "fe80::1%eth0",
    ],
)
def test_it_refuses_addresses_that_are_not_public(address: str) -> None:
    assert address_refusal(address) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "2606:4700::1111"])
def test_it_lets_public_addresses_through(address: str) -> None:
    assert address_refusal(address) is None


def test_the_allow_list_opens_a_network(settings: Any) -> None:
    settings.BACKSERV = {**settings.BACKSERV, "ALLOWED_NETWORKS": ["10.0.0.0/8"]}
    assert address_refusal("10.1.2.3") is None
    assert address_refusal("::ffff:10.1.2.3") is None
    assert address_refusal("192.168.1.1") is not None


def test_it_fetches_an_image_url_from_an_allowed_network(
    image_server: ImageServer, allow_loopback: None, run_job: RunJob
) -> None:
    url = image_server.serve("/cat.png", png_bytes(24, 16), **{"Content-Type": "image/png"})
    task = run_job("image_upscale", upscale(url))
    assert task.state == TaskState.SUCCESS, task.error_message
    assert output_image(task).size == (48, 32)
    assert image_server.requests == ["/cat.png"]


def test_allowing_private_urls_lets_an_input_url_through(
    image_server: ImageServer, run_job: RunJob, settings: Any
) -> None:
    settings.BACKSERV = {**settings.BACKSERV, "ALLOW_PRIVATE_URLS": True}
    assert settings.BACKSERV["ALLOWED_NETWORKS"] == []
    url = image_server.serve("/cat.png", png_bytes(24, 16), **{"Content-Type": "image/png"})
    task = run_job("image_upscale", upscale(url))
    assert task.state == TaskState.SUCCESS, task.error_message
    assert image_server.requests == ["/cat.png"]


def test_it_follows_a_redirect_within_the_limit(
    image_server: ImageServer, allow_loopback: None, run_job: RunJob
) -> None:
    image_server.serve("/final.png", png_bytes(8, 8))
    image_server.serve("/second", b"", status=302, Location="/final.png")
    first = image_server.serve("/first", b"", status=301, Location=image_server.url("/second"))
    task = run_job("image_upscale", upscale(first))
    assert task.state == TaskState.SUCCESS, task.error_message
    assert image_server.requests == ["/first", "/second", "/final.png"]


def test_it_gives_up_after_too_many_redirects(
    image_server: ImageServer, allow_loopback: None, run_job: RunJob, settings: Any
) -> None:
    settings.GENERATION = {**settings.GENERATION, "INPUT_MAX_REDIRECTS": 1}
    image_server.serve("/final.png", png_bytes(8, 8))
    image_server.serve("/second", b"", status=302, Location="/final.png")
    task = run_job("image_upscale", upscale(image_server.serve("/first", b"", status=302, Location="/second")))
    assert (task.state, task.error_code) == (TaskState.FAILURE, "INPUT_FETCH_FAILED")
    assert "redirects" in task.error_message
    assert "/final.png" not in image_server.requests


def test_it_refuses_a_loopback_address_at_submit_without_the_allow_list(
    image_server: ImageServer, client: APIClient
) -> None:
    url = image_server.serve("/cat.png", png_bytes(8, 8))
    response = client.post("/api/v1/tasks", {"task_type": "image_upscale", "params": upscale(url)}, format="json")
    assert response.status_code == 400
    assert "params.image" in response.json()["fields"]
    assert image_server.requests == []


def test_it_refuses_a_host_name_that_resolves_to_loopback(image_server: ImageServer, run_job: RunJob) -> None:
    image_server.serve("/cat.png", png_bytes(8, 8))
    task = run_job("image_upscale", upscale(image_server.url("/cat.png", host="localhost")))
    assert (task.state, task.error_code) == (TaskState.FAILURE, "INPUT_ADDRESS_REFUSED")
    assert "image:" in task.error_message
    assert image_server.requests == []


@pytest.mark.parametrize("private_url", ["http://10.20.30.40/cat.png", "http://169.254.169.254/latest/meta-data"])
def test_it_refuses_a_redirect_to_a_private_address(
    image_server: ImageServer, run_job: RunJob, settings: Any, private_url: str
) -> None:
    # Only the test server's own address is allowed, not the networks it redirects to.
    settings.BACKSERV = {**settings.BACKSERV, "ALLOWED_NETWORKS": ["127.0.0.1/32"]}
    task = run_job("image_upscale", upscale(image_server.serve("/hop", b"", status=302, Location=private_url)))
    assert (task.state, task.error_code) == (TaskState.FAILURE, "INPUT_ADDRESS_REFUSED")


def test_it_refuses_an_input_over_the_size_cap(
    image_server: ImageServer, allow_loopback: None, run_job: RunJob, settings: Any
) -> None:
    settings.GENERATION = {**settings.GENERATION, "INPUT_MAX_BYTES": 1000}
    task = run_job("image_upscale", upscale(image_server.serve("/big.png", png_bytes(64, 64))))
    assert (task.state, task.error_code) == (TaskState.FAILURE, "INPUT_TOO_LARGE")


def test_it_refuses_bytes_that_are_not_an_image(
    image_server: ImageServer, allow_loopback: None, run_job: RunJob
) -> None:
    url = image_server.serve("/page.png", b"<html>not an image</html>", **{"Content-Type": "image/png"})
    task = run_job("image_upscale", upscale(url))
    assert (task.state, task.error_code) == (TaskState.FAILURE, "INPUT_NOT_IMAGE")


def test_it_refuses_a_decompression_bomb_before_decoding_it(
    image_server: ImageServer, allow_loopback: None, run_job: RunJob, settings: Any
) -> None:
    settings.GENERATION = {**settings.GENERATION, "INPUT_MAX_PIXELS": 1_000_000}
    buffer = io.BytesIO()
    # A few kilobytes that unpack to 16 million pixels.
    Image.new("L", (4000, 4000)).save(buffer, format="PNG", optimize=True)
    assert len(buffer.getvalue()) < 100_000
    task = run_job("image_upscale", upscale(image_server.serve("/bomb.png", buffer.getvalue())))
    assert (task.state, task.error_code) == (TaskState.FAILURE, "INPUT_TOO_LARGE")
    assert "4000x4000" in task.error_message


def test_an_input_server_answering_503_is_tried_again_on_the_next_attempt(
    image_server: ImageServer, allow_loopback: None, run_job: RunJob, settings: Any
) -> None:
    settings.BACKSERV = {**settings.BACKSERV, "RETRY_BACKOFF_SECONDS": 0.01, "RETRY_BACKOFF_MAX_SECONDS": 0.01}
    url = image_server.serve("/busy.png", png_bytes(8, 8))
    image_server.failures["/busy.png"] = 1
    task = run_job("image_upscale", upscale(url))
    assert task.state == TaskState.SUCCESS, task.error_message
    assert task.attempts == 2 and image_server.requests == ["/busy.png", "/busy.png"]
    retried = task.events.get(type="retry_scheduled")
    assert retried.data["code"] == "INPUT_FETCH_UNAVAILABLE" and "503" in retried.data["message"]


def test_an_http_error_fails_the_job_with_its_status(
    image_server: ImageServer, allow_loopback: None, run_job: RunJob
) -> None:
    task = run_job("image_upscale", upscale(image_server.url("/missing.png")))
    assert (task.state, task.error_code) == (TaskState.FAILURE, "INPUT_FETCH_FAILED")
    assert "404" in task.error_message


def test_bare_base64_is_an_image_input(run_job: RunJob) -> None:
    task = run_job("image_upscale", upscale(base64.b64encode(png_bytes(10, 12)).decode()))
    assert task.state == TaskState.SUCCESS, task.error_message
    assert output_image(task).size == (20, 24)


def test_a_task_reference_to_a_job_that_has_not_succeeded_fails_at_run_time(
    client: APIClient, stopped_worker: Any
) -> None:
    body = {"task_type": "image_creation", "params": {"prompt": "x", "width": 64, "height": 64, "steps": 1}}
    waiting = client.post("/api/v1/tasks", body, format="json").json()["task_id"]
    # Higher priority: the chained job runs first, while the job it names is still waiting.
    chained = client.post(
        "/api/v1/tasks",
        {"task_type": "image_upscale", "params": upscale(f"task:{waiting}"), "priority": 9},
        format="json",
    ).json()["task_id"]
    stopped_worker.start()
    task = stopped_worker.wait_for(chained)
    assert (task.state, task.error_code) == (TaskState.FAILURE, "INPUT_TASK_NOT_READY")
