"""JWTs of the distributed-system document: minted by `manage.py create_jwt`, HS256 with
JWT_SECRET only, `exp` required, the role mapped to scopes, off without a secret."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import jwt
import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.jwt import JwtRefused, jwt_verify, lifetime_parse
from accounts.models import User
from tests.test_hygiene import PRODUCTION_ENV, _manage

SECRET = "tests-only-jwt-secret-0123456789-abcdefghij"


@pytest.fixture
def jwt_secret(settings: Any) -> str:
    settings.JWT_SECRET = SECRET
    return SECRET


def _mint(*args: str) -> str:
    out = StringIO()
    call_command("create_jwt", *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip().splitlines()[-1]


def test_create_jwt_mints_a_token_the_api_takes(jwt_secret: str, owner: User) -> None:
    token = _mint("alice", "--expires-in", "2h")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["role"] == "user"
    assert 7190 <= claims["exp"] - datetime.now(UTC).timestamp() <= 7200
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get("/api/stats/tasks").status_code == 403  # a user, not an admin


def test_create_jwt_gives_the_admin_role_to_staff_only(jwt_secret: str, owner: User, db: None) -> None:
    with pytest.raises(CommandError, match="not staff"):
        _mint("alice", "--role", "admin")
    token = _mint("ops", "--role", "admin", "--staff")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get("/api/stats/tasks").status_code == 200


def test_an_admin_jwt_loses_the_admin_routes_with_staff_status(jwt_secret: str, db: None) -> None:
    token = _mint("ops", "--role", "admin", "--staff")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    User.objects.filter(username="ops").update(is_staff=False)
    assert client.get("/api/stats/tasks").json() == {"error": "Forbidden", "details": "Admin role required"}


@pytest.mark.parametrize("lifetime", ["0", "-5", "12x", "h", ""])
def test_create_jwt_refuses_a_bad_lifetime(jwt_secret: str, lifetime: str, db: None) -> None:
    with pytest.raises(CommandError, match="--expires-in"):
        _mint("alice", "--expires-in", lifetime)


def test_lifetimes_read_like_jsonwebtokens_expires_in() -> None:
    assert lifetime_parse("3600") == timedelta(hours=1)
    assert lifetime_parse("30m") == timedelta(minutes=30)
    assert lifetime_parse("7d") == timedelta(days=7)


def test_create_jwt_says_when_no_secret_is_configured(settings: Any, db: None) -> None:
    settings.JWT_SECRET = ""
    with pytest.raises(CommandError, match="JWT_SECRET"):
        _mint("alice")


def _encoded(claims: dict[str, Any], key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def test_it_refuses_tokens_without_exp_or_sub_or_with_a_strange_role(jwt_secret: str, owner: User) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    for claims in ({"sub": "alice"}, {"exp": later}, {"sub": "alice", "exp": later, "role": "root"}):
        with pytest.raises(JwtRefused):
            jwt_verify(_encoded(claims))


def test_it_refuses_unsigned_and_other_algorithm_tokens(jwt_secret: str, owner: User) -> None:
    claims = {"sub": "alice", "exp": datetime.now(UTC) + timedelta(hours=1)}
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(JwtRefused):
        jwt_verify(unsigned)
    with pytest.raises(JwtRefused):
        jwt_verify(_encoded(claims, key=SECRET * 2, algorithm="HS512"))


def test_an_inactive_users_token_is_refused(jwt_secret: str, owner: User) -> None:
    token = _encoded({"sub": "alice", "exp": datetime.now(UTC) + timedelta(hours=1)})
    assert jwt_verify(token)[0] == owner
    User.objects.filter(pk=owner.pk).update(is_active=False)
    with pytest.raises(JwtRefused):
        jwt_verify(token)


def test_an_expired_token_says_so(jwt_secret: str, owner: User) -> None:
    token = _encoded({"sub": "alice", "exp": datetime.now(UTC) - timedelta(seconds=1)})
    with pytest.raises(JwtRefused) as refused:
        jwt_verify(token)
    assert refused.value.code == "token_expired"


def test_a_short_secret_refuses_to_start() -> None:
    result = _manage("check", env={**PRODUCTION_ENV, "JWT_SECRET": "short"})
    assert result.returncode != 0 and "JWT_SECRET must be at least 32 bytes" in result.stderr


def test_production_starts_without_a_jwt_secret_and_refuses_jwts() -> None:
    code = "from django.conf import settings as s; print(repr(s.JWT_SECRET))"
    result = _manage("shell", "--verbosity", "0", "-c", code, env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "''"
