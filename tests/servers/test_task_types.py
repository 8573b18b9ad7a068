"""GET /api/v1/task-types: each type's params as JSON Schema (from the spec that validates
them), defaults, limits, models, and whether a worker can run it now."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import pytest
from rest_framework.test import APIClient

from accounts.models import User
from backserv_site.errors import InvalidInput
from generation.specs import TASK_TYPES, validate_params
from servers.models import Server
from servers.routing import local_workers_present
from servers.services import server_set_maintenance
from tests.generation.conftest import png_bytes

IMAGE = "data:image/png;base64," + base64.b64encode(png_bytes(16, 16)).decode()
# The least each type takes; video asks for one second, so the most fps stays in frames.
BASE = {
    "image_creation": {"prompt": "x"},
    "image_to_image": {"prompt": "x", "image": IMAGE},
    "image_upscale": {"image": IMAGE, "method": "diffusion"},
    "face_swap": {"source_image": IMAGE, "target_image": IMAGE},
    "video_creation": {"prompt": "x", "duration": 1},
}


@pytest.fixture
def described(client: APIClient) -> dict[str, dict[str, Any]]:
    response = client.get("/api/v1/task-types")
    assert response.status_code == 200
    return {task_type["name"]: task_type for task_type in response.json()["task_types"]}


def test_it_lists_every_type_with_a_valid_json_schema_of_its_params(described: dict[str, dict[str, Any]]) -> None:
    assert sorted(described) == sorted(TASK_TYPES)
    for name, task_type in described.items():
        assert set(task_type) == {"name", "description", "params_schema", "defaults", "limits", "available", "models"}
        assert task_type["description"] == TASK_TYPES[name].description
        jsonschema.Draft202012Validator.check_schema(task_type["params_schema"])
        assert task_type["params_schema"]["additionalProperties"] is False
        assert task_type["limits"]["run_time_limit_seconds"] > 0
    image = described["image_creation"]
    assert image["params_schema"]["required"] == ["prompt"]
    assert image["params_schema"]["properties"]["width"] == {
        "type": "integer",
        "minimum": 64,
        "maximum": 1024,
        "multipleOf": 8,
        "default": 512,
    }
    assert image["models"] == [{"key": "image_creation", "name": "tiny-sd"}]
    assert described["video_creation"]["limits"]["max_frames"] == 32
    assert described["face_swap"]["models"] == []


def _limit_probes(schema: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    """(param, a value at the limit, a value past it) for each limit the schema states."""
    for name, field in schema["properties"].items():
        if "maximum" in field and field.get("type") == "integer":
            step = field.get("multipleOf", 1)
            yield name, field["maximum"], field["maximum"] + step
        if "maxLength" in field:
            yield name, "a" * field["maxLength"], "a" * (field["maxLength"] + 1)
        if "multipleOf" in field:
            yield name, field["minimum"], field["minimum"] + 1
        if "enum" in field and field.get("type") == "integer":
            yield name, max(field["enum"]), max(field["enum"]) + 1


def test_the_schema_states_what_the_specs_enforce(described: dict[str, dict[str, Any]], owner: User) -> None:
    checked = 0
    for name, task_type in described.items():
        schema = task_type["params_schema"]
        for param, at_limit, past_limit in _limit_probes(schema):
            accepted = validate_params(task_type=name, params={**BASE[name], param: at_limit}, owner=owner)
            jsonschema.validate(accepted, schema)
            with pytest.raises(InvalidInput) as refused:
                validate_params(task_type=name, params={**BASE[name], param: past_limit}, owner=owner)
            assert f"params.{param}" in refused.value.fields, (name, param)
            jsonschema.validate({**BASE[name], param: at_limit}, schema)
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate({**BASE[name], param: past_limit}, schema)
            checked += 1
    assert checked >= 15, checked


def test_the_defaults_are_what_a_job_that_leaves_them_out_gets(client: APIClient, owner: User, settings: Any) -> None:
    settings.GENERATION = {**settings.GENERATION, "DEFAULT_STEPS": 9, "DEFAULT_SIZE": 320}
    types = {task_type["name"]: task_type for task_type in client.get("/api/v1/task-types").json()["task_types"]}
    for name, task_type in types.items():
        left_out = {key: value for key, value in task_type["defaults"].items() if key not in BASE[name]}
        validated = validate_params(task_type=name, params=BASE[name], owner=owner)
        assert {key: validated[key] for key in left_out} == left_out, name
    image = types["image_creation"]
    assert (image["defaults"]["steps"], image["defaults"]["width"], image["defaults"]["num_images"]) == (9, 320, 1)
    assert image["params_schema"]["properties"]["steps"]["default"] == 9


def test_a_type_is_available_while_an_online_server_declares_it(
    client: APIClient, make_server: Callable[..., Server]
) -> None:
    def available() -> set[str]:
        types = client.get("/api/v1/task-types").json()["task_types"]
        return {task_type["name"] for task_type in types if task_type["available"]}

    assert available() == set()
    server = make_server("gpu-1", capabilities=["image_creation", "video_creation"])
    assert available() == {"image_creation", "video_creation"}
    server_set_maintenance(server=server, maintenance=True, reason="driver update")
    assert available() == set()


def test_the_embedded_workers_make_available_what_this_machine_can_run(client: APIClient) -> None:
    local_workers_present()
    try:
        types = client.get("/api/v1/task-types").json()["task_types"]
    finally:
        local_workers_present(False)
    available = {task_type["name"] for task_type in types if task_type["available"]}
    # Lanczos needs Pillow alone, face swap OpenCV: both are installed here.
    assert {"image_upscale", "face_swap"} <= available


def test_one_type_by_name_and_an_unknown_one_is_a_404(client: APIClient) -> None:
    response = client.get("/api/v1/task-types/video_creation")
    assert response.status_code == 200 and response.json()["name"] == "video_creation"
    missing = client.get("/api/v1/task-types/teleportation")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_task_types_need_a_token(anonymous_client: APIClient) -> None:
    assert anonymous_client.get("/api/v1/task-types").status_code == 401
