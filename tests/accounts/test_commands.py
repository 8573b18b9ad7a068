"""create_api_token and revoke_api_token."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, User

pytestmark = pytest.mark.django_db


def _create(*args: str) -> str:
    out = StringIO()
    call_command("create_api_token", *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip().splitlines()[-1]


def _status(secret: str, path: str = "/api/v1/tasks") -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client.get(path).status_code


def test_it_creates_the_user_and_a_read_write_token() -> None:
    secret = _create("carol")
    token = ApiToken.objects.get(prefix=secret[3:11])
    assert token.user.username == "carol" and not token.user.is_staff
    assert token.scopes == ["read", "write"] and token.name == "cli" and token.expires_at is None
    assert _status(secret) == 200


def test_staff_tokens_carry_the_admin_scope_by_default() -> None:
    secret = _create("ops", "--staff", "--name", "console")
    token = ApiToken.objects.get(prefix=secret[3:11])
    assert token.user.is_staff and token.user.is_superuser
    assert token.scopes == ["read", "write", "admin"] and token.name == "console"


def test_it_takes_scopes_and_an_expiry(owner: User) -> None:
    secret = _create(owner.username, "--scopes", "read", "--expires-in", "7")
    token = ApiToken.objects.get(prefix=secret[3:11])
    assert token.user == owner and token.scopes == ["read"]
    assert timedelta(days=6, hours=23) < token.expires_at - timezone.now() <= timedelta(days=7)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--scopes", "read,admin"), "Only staff users can hold the admin scope."),
        (("--scopes", "read,sudo"), "Unknown scope 'sudo'"),
        (("--expires-in", "0"), "--expires-in must be at least 1 day."),
    ],
)
def test_it_refuses_bad_options(owner: User, args: tuple[str, ...], message: str) -> None:
    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        _create(owner.username, *args)


@pytest.mark.parametrize("form", ["prefix", "bs_prefix", "whole token"])
def test_it_revokes_a_token_by_prefix(owner: User, form: str) -> None:
    secret = _create(owner.username)
    prefix = secret[3:11]
    argument = {"prefix": prefix, "bs_prefix": f"bs_{prefix}", "whole token": secret}[form]
    out = StringIO()
    call_command("revoke_api_token", argument, stdout=out)
    assert f"Revoked token {prefix}" in out.getvalue()
    assert _status(secret) == 401


def test_it_refuses_an_unknown_prefix_without_echoing_it() -> None:
    with pytest.raises(CommandError) as error:
        call_command("revoke_api_token", "bs_secretish_value_that_is_long")
    assert "secretish" not in str(error.value)
