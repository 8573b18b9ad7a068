"""POST/GET/DELETE /api/v1/uploads: input images a user sends to use in later jobs."""

from __future__ import annotations

import io
from typing import Any

from django.core.files.storage import default_storage
from rest_framework.test import APIClient

from generation.models import Upload
from tests.generation.conftest import png_bytes


def post_upload(client: APIClient, data: bytes) -> Any:
    return client.post("/api/v1/uploads", {"file": io.BytesIO(data)}, format="multipart")


def test_it_stores_an_upload_and_returns_its_reference(client: APIClient) -> None:
    response = post_upload(client, png_bytes(20, 10))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["reference"] == f"upload:{body['id']}"
    assert (body["content_type"], body["width"], body["height"]) == ("image/png", 20, 10)
    upload = Upload.objects.get(pk=body["id"])
    assert default_storage.exists(upload.file.name)
    assert client.get(f"/api/v1/uploads/{body['id']}").json()["id"] == body["id"]


def test_it_lists_only_the_callers_uploads(client: APIClient, other_client: APIClient) -> None:
    mine = post_upload(client, png_bytes(8, 8)).json()["id"]
    post_upload(other_client, png_bytes(8, 8))
    listed = client.get("/api/v1/uploads").json()["results"]
    assert [item["id"] for item in listed] == [mine]


def test_it_needs_a_token(anonymous_client: APIClient) -> None:
    assert post_upload(anonymous_client, png_bytes(8, 8)).status_code == 401
    anonymous_client.credentials(HTTP_AUTHORIZATION="Bearer not-a-real-token")
    assert anonymous_client.get("/api/v1/uploads").status_code == 401


def test_another_users_upload_is_not_found(client: APIClient, other_client: APIClient) -> None:
    upload_id = post_upload(client, png_bytes(8, 8)).json()["id"]
    assert other_client.get(f"/api/v1/uploads/{upload_id}").status_code == 404
    assert other_client.delete(f"/api/v1/uploads/{upload_id}").status_code == 404
    response = other_client.post(
        "/api/v1/tasks",
        {"task_type": "image_upscale", "params": {"image": f"upload:{upload_id}", "method": "lanczos"}},
        format="json",
    )
    assert response.status_code == 400
    assert "params.image" in response.json()["fields"]
    assert Upload.objects.filter(pk=upload_id).exists()


def test_it_refuses_a_file_that_is_not_an_image(client: APIClient) -> None:
    response = post_upload(client, b"just some text, not pixels")
    assert response.status_code == 400
    assert response.json()["fields"]["file"]
    assert not Upload.objects.exists()


def test_it_refuses_a_request_without_a_file(client: APIClient) -> None:
    response = client.post("/api/v1/uploads", {}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()["fields"]


def test_it_refuses_a_form_field_it_does_not_know(client: APIClient) -> None:
    body = {"file": io.BytesIO(png_bytes(8, 8)), "title": "holiday"}
    response = client.post("/api/v1/uploads", body, format="multipart")
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["title"]
    assert not Upload.objects.exists()


def test_it_refuses_a_file_over_the_size_cap(client: APIClient, settings: Any) -> None:
    settings.GENERATION = {**settings.GENERATION, "INPUT_MAX_BYTES": 500}
    response = post_upload(client, png_bytes(64, 64))
    assert response.status_code == 400
    assert "500" in response.json()["fields"]["file"][0]


def test_delete_removes_the_upload_and_its_file(client: APIClient, django_capture_on_commit_callbacks: Any) -> None:
    upload_id = post_upload(client, png_bytes(8, 8)).json()["id"]
    name = Upload.objects.get(pk=upload_id).file.name
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/v1/uploads/{upload_id}").status_code == 204
    assert not Upload.objects.filter(pk=upload_id).exists()
    assert not default_storage.exists(name)
    assert client.get(f"/api/v1/uploads/{upload_id}").status_code == 404
