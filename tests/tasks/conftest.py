from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _db_for_service_tests(request: pytest.FixtureRequest) -> None:
    # Plain tests in this folder use the database; tests that mark transaction=True
    # (threads racing) get a transactional one from their own marker.
    if "django_db" not in request.keywords:
        request.getfixturevalue("db")
