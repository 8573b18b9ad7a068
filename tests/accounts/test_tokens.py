"""API tokens: shown once, stored only as a keyed hash, checked on every request."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.models import ApiToken, User
from accounts.services import api_token_create

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
