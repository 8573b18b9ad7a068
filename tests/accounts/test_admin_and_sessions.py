"""The token admin (list, revoke, last use; never the secret), the per-user quota
field, and session authentication for staff in the browser (with CSRF)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, User
from accounts.services import api_token_create
from tasks import services

pytestmark = pytest.mark.django_db

PASSWORD = "unused-pass-1234"  # the conftest users' password


@pytest.fixture
def staff_browser(staff: User) -> Client:
    browser = Client()
    assert browser.login(username=staff.username, password=PASSWORD)
    return browser


def test_the_token_list_shows_prefix_scopes_and_last_use_but_never_a_secret(staff_browser: Client, owner: User) -> None:
    issued = api_token_create(user=owner, name="ci-runner")
    ApiToken.objects.filter(pk=issued.token.pk).update(last_used_at=timezone.now())
    page = staff_browser.get("/admin/accounts/apitoken/").content.decode()
    assert issued.token.prefix in page and "ci-runner" in page and "Last used at" in page
    detail = staff_browser.get(f"/admin/accounts/apitoken/{issued.token.pk}/change/").content.decode()
    for secret_part in (issued.secret, issued.secret[12:], issued.token.key_hash):
        assert secret_part not in page and secret_part not in detail


def test_the_admin_cannot_add_tokens(staff_browser: Client) -> None:
    assert staff_browser.get("/admin/accounts/apitoken/add/").status_code == 403


def test_the_admin_revokes_tokens(staff_browser: Client, owner: User) -> None:
    issued = api_token_create(user=owner)
    response = staff_browser.post(
        "/admin/accounts/apitoken/",
        {"action": "revoke", "_selected_action": [issued.token.pk]},
    )
    assert response.status_code == 302
    assert ApiToken.objects.get(pk=issued.token.pk).revoked_at is not None
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    assert client.get("/api/v1/tasks").status_code == 401


def test_the_admin_sets_a_users_quota(staff_browser: Client, owner: User) -> None:
    page = staff_browser.get(f"/admin/accounts/user/{owner.pk}/change/").content.decode()
    assert 'name="max_unfinished_tasks"' in page


def test_regular_users_cannot_use_the_admin(owner: User) -> None:
    browser = Client()
    assert browser.login(username=owner.username, password=PASSWORD)
    response = browser.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_a_staff_session_reads_every_users_jobs(staff: User, owner: User) -> None:
    task = services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "x"})
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(staff)
    response = browser.get("/api/v1/tasks")
    assert response.status_code == 200
    assert str(task.pk) in {item["task_id"] for item in response.json()["results"]}


def test_a_session_write_needs_the_csrf_token(staff: User) -> None:
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(staff)
    body = {"task_type": "image_creation", "params": {"prompt": "x", "width": 64, "height": 64}}

    refused = browser.post("/api/v1/tasks", body, format="json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]

    browser.get("/admin/")  # a page with a form sets the CSRF cookie
    csrf = browser.cookies["csrftoken"].value
    accepted = browser.post("/api/v1/tasks", body, format="json", HTTP_X_CSRFTOKEN=csrf)
    assert accepted.status_code == 202
