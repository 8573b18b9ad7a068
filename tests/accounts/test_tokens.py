"""API tokens: shown once, stored only as a keyed hash, checked on every request;
both header keywords, revocation, expiry, last use, and who may hold which scope."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, User
from accounts.services import api_token_create, api_token_revoke, token_hash
from backserv_site.errors import InvalidInput

pytestmark = pytest.mark.django_db


def test_create_api_token_creates_the_user_and_prints_the_token_last() -> None:
    out = StringIO()
    call_command("create_api_token", "newbie", stdout=out, stderr=StringIO())
    token = out.getvalue().strip().splitlines()[-1]
    assert token.startswith("bs_")
    user = User.objects.get(username="newbie")
    assert not user.is_staff
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get("/api/v1/tasks").status_code == 200


def test_create_api_token_with_staff_makes_an_operator() -> None:
    call_command("create_api_token", "admin", "--staff", stdout=StringIO(), stderr=StringIO())
    call_command("create_api_token", "admin", "--staff", stdout=StringIO(), stderr=StringIO())
    admin = User.objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser
    assert admin.api_tokens.count() == 2


def test_the_secret_is_never_stored(owner: User) -> None:
    issued = api_token_create(user=owner, name="ci")
    row = ApiToken.objects.get(pk=issued.token.pk)
    stored = " ".join(str(value) for value in row.__dict__.values())
    assert issued.secret.split("_", 2)[2] not in stored
    assert row.prefix in issued.secret and len(row.key_hash) == 64


@pytest.mark.parametrize(
    "mangle",
    [
        lambda secret: secret[:-1] + ("A" if secret[-1] != "A" else "B"),  # wrong secret, right prefix
        lambda secret: "bs_00000000_" + secret.split("_", 2)[2],  # unknown prefix
        lambda secret: secret.replace("bs_", "xx_"),
        lambda secret: "",
    ],
)
def test_it_refuses_a_token_that_is_not_exactly_right(owner: User, mangle: object) -> None:
    secret = api_token_create(user=owner).secret
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {mangle(secret)}")  # type: ignore[operator]
    assert client.get("/api/v1/tasks").status_code == 401


def test_a_deactivated_users_token_stops_working(owner: User) -> None:
    secret = api_token_create(user=owner).secret
    owner.is_active = False
    owner.save()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get("/api/v1/tasks").status_code == 401


def _get_tasks(secret: str, keyword: str = "Bearer") -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {secret}")
    return client.get("/api/v1/tasks").status_code


OLD_KEY = "old-secret-key-rotated-out-0123456789-abcdefghijklmnopqrstuvwxyz"
NEW_KEY = "new-secret-key-rotated-in-0123456789-abcdefghijklmnopqrstuvwxyz"


def test_a_token_outlives_a_secret_key_rotation_through_the_fallbacks(owner: User, settings: Any) -> None:
    settings.SECRET_KEY = OLD_KEY
    issued = api_token_create(user=owner)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]

    assert _get_tasks(issued.secret) == 200
    # Re-hashed under the new key at that use, so the old key can go.
    assert ApiToken.objects.get(pk=issued.token.pk).key_hash == token_hash(issued.secret)
    settings.SECRET_KEY_FALLBACKS = []
    assert _get_tasks(issued.secret) == 200


def test_a_rotated_secret_key_without_the_fallback_revokes_tokens(owner: User, settings: Any) -> None:
    settings.SECRET_KEY = OLD_KEY
    issued = api_token_create(user=owner)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, []

    assert _get_tasks(issued.secret) == 401
    assert ApiToken.objects.get(pk=issued.token.pk).key_hash == token_hash(issued.secret, key=OLD_KEY)


def test_a_fallback_does_not_open_a_wrong_secret(owner: User, settings: Any) -> None:
    settings.SECRET_KEY = OLD_KEY
    issued = api_token_create(user=owner)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]

    assert _get_tasks(issued.secret[:-1] + ("A" if issued.secret[-1] != "A" else "B")) == 401
    assert ApiToken.objects.get(pk=issued.token.pk).key_hash == token_hash(issued.secret, key=OLD_KEY)


@pytest.mark.parametrize("keyword", ["Bearer", "Token", "bearer"])
def test_both_header_keywords_authenticate(owner: User, keyword: str) -> None:
    assert _get_tasks(api_token_create(user=owner).secret, keyword) == 200


def test_it_refuses_a_revoked_token(owner: User) -> None:
    issued = api_token_create(user=owner)
    api_token_revoke(token=issued.token)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    response = client.get("/api/v1/tasks")
    assert response.status_code == 401
    assert response.json()["code"] == "token_revoked"


def test_revoking_twice_keeps_the_first_time(owner: User) -> None:
    token = api_token_create(user=owner).token
    first = api_token_revoke(token=token).revoked_at
    assert api_token_revoke(token=token).revoked_at == first


def test_it_refuses_an_expired_token(owner: User) -> None:
    issued = api_token_create(user=owner, expires_at=timezone.now() + timedelta(days=1))
    assert _get_tasks(issued.secret) == 200
    ApiToken.objects.filter(pk=issued.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    response = client.get("/api/v1/tasks")
    assert response.status_code == 401
    assert response.json()["code"] == "token_expired"


def test_it_refuses_an_expiry_in_the_past(owner: User) -> None:
    with pytest.raises(InvalidInput) as error:
        api_token_create(user=owner, expires_at=timezone.now() - timedelta(minutes=1))
    assert "expires_at" in error.value.fields


def test_last_use_is_written_at_most_once_a_minute(owner: User) -> None:
    issued = api_token_create(user=owner)
    assert issued.token.last_used_at is None
    assert _get_tasks(issued.secret) == 200
    first_use = ApiToken.objects.get(pk=issued.token.pk).last_used_at
    assert first_use is not None

    assert _get_tasks(issued.secret) == 200
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at == first_use

    a_while_ago = timezone.now() - timedelta(seconds=61)
    ApiToken.objects.filter(pk=issued.token.pk).update(last_used_at=a_while_ago)
    assert _get_tasks(issued.secret) == 200
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at > a_while_ago


def test_only_staff_can_hold_the_admin_scope(owner: User, staff: User) -> None:
    with pytest.raises(InvalidInput) as error:
        api_token_create(user=owner, scopes=["read", "admin"])
    assert error.value.fields["scopes"] == ["Only staff users can hold the admin scope."]
    assert api_token_create(user=staff, scopes=["admin", "read"]).token.scopes == ["read", "admin"]


@pytest.mark.parametrize("scopes", [["read", "delete"], [], ["READ"]], ids=["unknown", "none", "wrong-case"])
def test_it_refuses_bad_scopes(owner: User, scopes: list[str]) -> None:
    with pytest.raises(InvalidInput) as error:
        api_token_create(user=owner, scopes=scopes)
    assert "scopes" in error.value.fields


def test_default_scopes_are_read_and_write(owner: User) -> None:
    assert api_token_create(user=owner).token.scopes == ["read", "write"]
