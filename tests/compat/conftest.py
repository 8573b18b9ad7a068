from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from rest_framework.test import APIClient

from accounts.jwt import jwt_issue
from accounts.models import User

JWT_SECRET = "tests-only-jwt-secret-0123456789-abcdefghij"


@pytest.fixture
def small_defaults(settings: Any) -> None:
    """The documents' examples leave size and steps out: make the defaults tiny-model
    sized so replaying them through the worker stays fast."""
    settings.GENERATION = {**settings.GENERATION, "DEFAULT_SIZE": 64, "DEFAULT_STEPS": 4}


@pytest.fixture(autouse=True)
def _db_for_compat_tests(request: pytest.FixtureRequest) -> None:
    if "worker" not in request.fixturenames and "stopped_worker" not in request.fixturenames:
        request.getfixturevalue("db")


@pytest.fixture
def jwt_client(settings: Any) -> Callable[..., APIClient]:
    """An API client for `user` carrying a JWT (the distributed-system document's
    tokens): `role`, `expires_in`, issued `issued_ago`, signed with `secret`."""
    settings.JWT_SECRET = JWT_SECRET

    def make(
        user: User,
        *,
        role: str = "user",
        expires_in: timedelta = timedelta(hours=1),
        issued_ago: timedelta = timedelta(0),
        secret: str = JWT_SECRET,
    ) -> APIClient:
        now = datetime.now(UTC) - issued_ago
        if secret == JWT_SECRET:
            token = jwt_issue(user=user, role=role, expires_in=expires_in, now=now)
        else:
            claims = {"sub": user.username, "role": role, "iat": now, "exp": now + expires_in}
            token = jwt.encode(claims, secret, algorithm="HS256")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        client.user = user  # type: ignore[attr-defined]
        return client

    return make
