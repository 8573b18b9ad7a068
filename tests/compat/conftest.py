from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def small_defaults(settings: Any) -> None:
    """The documents' examples leave size and steps out: make the defaults tiny-model
    sized so replaying them through the worker stays fast."""
    settings.GENERATION = {**settings.GENERATION, "DEFAULT_SIZE": 64, "DEFAULT_STEPS": 4}


@pytest.fixture(autouse=True)
def _db_for_compat_tests(request: pytest.FixtureRequest) -> None:
    if "worker" not in request.fixturenames and "stopped_worker" not in request.fixturenames:
        request.getfixturevalue("db")
