"""Bad params of each task type are a 400 at submit that names the field and the limit."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from rest_framework.test import APIClient

from tasks import services
from tasks.models import Task
from tests.generation.conftest import png_bytes

IMAGE = "data:image/png;base64," + base64.b64encode(png_bytes(8, 8)).decode()


def submit(client: APIClient, task_type: str, params: dict[str, Any]) -> Any:
    return client.post("/api/v1/tasks", {"task_type": task_type, "params": params}, format="json")


@pytest.mark.parametrize(
    ("task_type", "params", "field", "says"),
    [
        ("image_upscale", {"image": IMAGE, "scale_factor": 3}, "params.scale_factor", "2, 4"),
        ("image_upscale", {"scale_factor": 2}, "params.image", "required"),
        ("image_upscale", {"image": IMAGE, "image_url": IMAGE}, "params.image_url", "once"),
        ("image_upscale", {"image": "ftp://example.com/a.png"}, "params.image", "http(s) URL"),
        ("image_upscale", {"image": "data:image/png;base64,@@@"}, "params.image", "base64"),
        (
            "image_upscale",
            {"image": "data:;base64," + base64.b64encode(b"plain text!!").decode()},
            "params.image",
            "not an image",
        ),
        ("image_upscale", {"image": "http://192.168.0.10/a.png"}, "params.image", "public"),
        ("image_to_image", {"image": IMAGE, "prompt": "x", "strength": 1.5}, "params.strength", "1"),
        ("image_to_image", {"prompt": "x"}, "params.image", "required"),
        ("face_swap", {"source_image": IMAGE}, "params.target_image", "required"),
        ("video_creation", {"prompt": "x", "duration": 5, "fps": 8}, "params.duration", "at most 32 frames"),
        ("video_creation", {"prompt": "x", "fps": 120}, "params.fps", "at most 30"),
        ("video_creation", {"prompt": "x", "width": 63}, "params.width", "multiple of 8"),
    ],
)
def test_it_refuses_bad_params_naming_the_field(
    client: APIClient, task_type: str, params: dict[str, Any], field: str, says: str
) -> None:
    response = submit(client, task_type, params)
    assert response.status_code == 400, response.content
    fields = response.json()["fields"]
    assert field in fields, fields
    assert says in fields[field][0]
    assert not Task.objects.exists()


def test_a_diffusion_upscale_needs_a_configured_model(client: APIClient, settings: Any) -> None:
    settings.GENERATION = {**settings.GENERATION, "MODELS": {**settings.GENERATION["MODELS"], "image_upscale_x4": ""}}
    response = submit(client, "image_upscale", {"image": IMAGE, "scale_factor": 4, "method": "diffusion"})
    assert response.status_code == 400
    assert "lanczos" in response.json()["fields"]["params.method"][0]
    # Without a model, lanczos is the default.
    accepted = submit(client, "image_upscale", {"image": IMAGE, "scale_factor": 4})
    assert accepted.status_code == 202
    assert accepted.json()["params"]["method"] == "lanczos"


def test_upscale_stores_image_url_as_image_and_defaults_to_diffusion(client: APIClient) -> None:
    response = submit(client, "image_upscale", {"image_url": IMAGE})
    assert response.status_code == 202, response.content
    params = response.json()["params"]
    assert "image_url" not in params and params["image"].startswith("data:")
    assert (params["scale_factor"], params["method"]) == (2, "diffusion")


def test_a_task_reference_must_name_the_callers_own_unfailed_job(
    client: APIClient, other_client: APIClient, owner: Any
) -> None:
    theirs = submit(other_client, "image_creation", {"prompt": "x"}).json()["task_id"]
    response = submit(client, "image_upscale", {"image": f"task:{theirs}"})
    assert response.status_code == 400
    assert "not found" in response.json()["fields"]["params.image"][0]
    cancelled = submit(client, "image_creation", {"prompt": "x"}).json()["task_id"]
    services.task_cancel(task=Task.objects.get(pk=cancelled))
    response = submit(client, "image_upscale", {"image": f"task:{cancelled}"})
    assert response.status_code == 400
    assert "REVOKED" in response.json()["fields"]["params.image"][0]
    assert submit(client, "image_upscale", {"image": "task:not-an-id"}).status_code == 400
