"""GET/POST /api/v1/tokens and DELETE /api/v1/tokens/{id}: one's own tokens only."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, User
from accounts.services import api_token_create

pytestmark = pytest.mark.django_db

LISTED_FIELDS = {"id", "name", "prefix", "scopes", "created_at", "expires_at", "last_used_at", "revoked_at"}


def _bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_it_lists_ones_own_tokens_without_secrets(client: APIClient, owner: User, other_user: User) -> None:
    api_token_create(user=owner, name="ci")
    api_token_create(user=other_user, name="not yours")
    response = client.get("/api/v1/tokens")
    assert response.status_code == 200
    listed = response.json()["results"]
    assert sorted(token["name"] for token in listed) == ["ci", "test"]
    assert all(set(token) == LISTED_FIELDS for token in listed)
    assert client.token not in response.content.decode()


def test_it_creates_a_token_and_shows_the_secret_once(client: APIClient) -> None:
    response = client.post("/api/v1/tokens", {"name": "deploy", "scopes": ["read"]}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["token"].startswith(f"bs_{body['prefix']}_")
    assert body["scopes"] == ["read"] and body["expires_at"] is None

    fresh = _bearer(body["token"])
    assert fresh.get("/api/v1/tasks").status_code == 200
    assert fresh.post("/api/v1/tasks", {}, format="json").status_code == 403
    assert body["token"] not in client.get("/api/v1/tokens").content.decode()


def test_it_creates_a_token_with_the_default_scopes_and_an_expiry(client: APIClient) -> None:
    response = client.post("/api/v1/tokens", {"name": "temp", "expires_in_days": 7}, format="json")
    assert response.status_code == 201
    token = ApiToken.objects.get(pk=response.json()["id"])
    assert token.scopes == ["read", "write"]
    assert timedelta(days=6, hours=23) < token.expires_at - timezone.now() <= timedelta(days=7)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scopes": ["read", "delete"]}, "scopes.1"),
        ({"scopes": []}, "scopes"),
        ({"scopes": "read"}, "scopes"),
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"expires_in_days": "soon"}, "expires_in_days"),
        ({"name": "x" * 101}, "name"),
        ({"name": 0}, "name"),
        ({"name": 1.5}, "name"),
        ({"name": None}, "name"),
        ({"scopes": [0]}, "scopes.0"),
        ({"scopes": [True]}, "scopes.0"),
        ({"name": "ci", "colour": 1}, "colour"),
    ],
)
def test_it_refuses_bad_input_naming_the_field(client: APIClient, body: dict[str, Any], field: str) -> None:
    response = client.post("/api/v1/tokens", body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert field in response.json()["fields"]


def test_a_regular_user_cannot_create_an_admin_token(client: APIClient) -> None:
    response = client.post("/api/v1/tokens", {"scopes": ["read", "admin"]}, format="json")
    assert response.status_code == 400
    assert response.json()["fields"]["scopes"] == ["Only staff users can hold the admin scope."]


def test_a_token_cannot_mint_a_stronger_token(client_with_scopes: Any, staff: User) -> None:
    staff_without_admin = client_with_scopes(staff, "read", "write")
    response = staff_without_admin.post("/api/v1/tokens", {"scopes": ["admin"]}, format="json")
    assert response.status_code == 400
    assert "'admin' scope" in response.json()["fields"]["scopes"][0]

    write_only = client_with_scopes(staff, "write")
    assert write_only.post("/api/v1/tokens", {"scopes": ["read"]}, format="json").status_code == 400
    assert write_only.post("/api/v1/tokens", {"scopes": ["write"]}, format="json").status_code == 201


def test_staff_with_the_admin_scope_can_create_admin_tokens(staff_client: APIClient) -> None:
    response = staff_client.post("/api/v1/tokens", {"scopes": ["read", "admin"]}, format="json")
    assert response.status_code == 201
    assert response.json()["scopes"] == ["read", "admin"]


def test_it_revokes_ones_own_token(client: APIClient, owner: User) -> None:
    issued = api_token_create(user=owner, name="old")
    response = client.delete(f"/api/v1/tokens/{issued.token.pk}")
    assert response.status_code == 200
    revoked_at = ApiToken.objects.get(pk=issued.token.pk).revoked_at
    assert revoked_at is not None and response.json()["revoked_at"] is not None
    assert set(response.json()) == LISTED_FIELDS
    assert _bearer(issued.secret).get("/api/v1/tasks").status_code == 401
    again = client.delete(f"/api/v1/tokens/{issued.token.pk}")
    assert again.status_code == 200
    assert ApiToken.objects.get(pk=issued.token.pk).revoked_at == revoked_at


def test_a_token_can_revoke_itself(client: APIClient, owner: User) -> None:
    own = ApiToken.objects.get(user=owner, name="test")
    assert client.delete(f"/api/v1/tokens/{own.pk}").status_code == 200
    assert client.get("/api/v1/tokens").status_code == 401


def test_it_does_not_find_another_users_token(other_client: APIClient, owner: User) -> None:
    issued = api_token_create(user=owner, name="mine")
    response = other_client.delete(f"/api/v1/tokens/{issued.token.pk}")
    assert response.status_code == 404
    assert response.json() == {"detail": f"Token {issued.token.pk} not found.", "code": "not_found"}
    assert ApiToken.objects.get(pk=issued.token.pk).revoked_at is None
    assert _bearer(issued.secret).get("/api/v1/tasks").status_code == 200


def test_it_refuses_anonymous_and_bad_tokens(anonymous_client: APIClient) -> None:
    assert anonymous_client.get("/api/v1/tokens").status_code == 401
    assert anonymous_client.post("/api/v1/tokens", {}, format="json").status_code == 401
    assert _bearer("bs_deadbeef_nope").get("/api/v1/tokens").status_code == 401
