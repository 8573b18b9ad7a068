"""Outputs and uploads are served only under signed, expiring URLs that only the
owner's API responses carry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from rest_framework.test import APIClient

from backserv_site.media import media_url

pytestmark = pytest.mark.django_db


def _store(name: str, data: bytes) -> str:
    return default_storage.save(name, ContentFile(data))


def _local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    return f"{parts.path}?{urlencode({**query, **changes})}"


def test_a_signed_url_serves_the_file_to_whoever_holds_it(anonymous_client: APIClient) -> None:
    path = _store("outputs/job-a/1-0.png", b"owner's picture")
    response = anonymous_client.get(media_url(path))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"owner's picture"
    assert response["Cache-Control"] == "private, max-age=300"
    assert response["Referrer-Policy"] == "no-referrer"
    assert anonymous_client.head(media_url(path)).status_code == 200


@pytest.mark.parametrize(
    "spoil",
    [
        lambda url: urlsplit(url).path,
        lambda url: _with_query(url, signature="A" + parse_qs(urlsplit(url).query)["signature"][0][1:]),
        lambda url: _with_query(url, expires=str(int(parse_qs(urlsplit(url).query)["expires"][0]) + 86400)),
        lambda url: _with_query(url, expires="never"),
    ],
    ids=["unsigned", "tampered-signature", "extended-expiry", "garbage-expiry"],
)
def test_it_refuses_an_unsigned_or_tampered_url(
    anonymous_client: APIClient, client: APIClient, spoil: Callable[[str], str]
) -> None:
    path = _store("outputs/job-a/1-0.png", b"owner's picture")
    for caller in (anonymous_client, client):
        response = caller.get(spoil(media_url(path)))
        assert response.status_code == 403
        assert response.json()["code"] == "invalid_signature"


def test_another_users_signature_does_not_open_the_owners_file(other_client: APIClient) -> None:
    owners = _store("outputs/job-owner/1-0.png", b"owner's picture")
    theirs = _store("outputs/job-other/1-0.png", b"their picture")
    their_url = media_url(theirs)
    swapped = their_url.replace(theirs, owners)
    assert swapped != their_url
    response = other_client.get(swapped)
    assert response.status_code == 403


def test_it_refuses_an_expired_url(settings: Any, anonymous_client: APIClient) -> None:
    path = _store("outputs/job-a/1-0.png", b"owner's picture")
    settings.MEDIA_URL_MAX_AGE_SECONDS = -1
    response = anonymous_client.get(media_url(path))
    assert response.status_code == 403
    assert "expired" in response.json()["detail"]


def test_a_link_signed_before_a_key_rotation_opens_through_the_fallbacks(
    settings: Any, anonymous_client: APIClient
) -> None:
    path = _store("outputs/job-a/1-0.png", b"owner's picture")
    old_key = settings.SECRET_KEY
    url = media_url(path)
    settings.SECRET_KEY = "the-next-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
    assert anonymous_client.get(_local(url)).status_code == 403
    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert anonymous_client.get(_local(url)).status_code == 200


def test_a_signed_url_for_a_deleted_file_is_not_found(anonymous_client: APIClient) -> None:
    path = _store("outputs/job-a/1-0.png", b"gone soon")
    url = media_url(path)
    default_storage.delete(path)
    response = anonymous_client.get(url)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


def test_it_refuses_writes(anonymous_client: APIClient) -> None:
    path = _store("outputs/job-a/1-0.png", b"owner's picture")
    assert anonymous_client.post(media_url(path)).status_code == 405


@pytest.mark.slow
def test_a_finished_jobs_output_reaches_its_owner_only(
    worker: Any, client: APIClient, other_client: APIClient, anonymous_client: APIClient, submit: Any
) -> None:
    task_id = submit()["task_id"]
    worker.wait_for(task_id)
    body = client.get(f"/api/v1/tasks/{task_id}").json()
    assert body["state"] == "SUCCESS", body
    output_url = body["result"]["outputs"][0]["url"]
    assert body["result"]["url"] == output_url
    assert "signature=" in output_url and "path" not in body["result"]["outputs"][0]

    download = anonymous_client.get(_local(output_url))
    assert download.status_code == 200
    assert b"".join(download.streaming_content).startswith(b"\x89PNG")

    assert other_client.get(f"/api/v1/tasks/{task_id}").status_code == 404
    assert anonymous_client.get(urlsplit(output_url).path).status_code == 403
