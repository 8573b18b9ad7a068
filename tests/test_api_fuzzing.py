"""Schemathesis fuzzes every operation of Back.Serv's own OpenAPI schema (/api/schema/),
in-process through the WSGI app, as staff with every scope: valid and invalid bodies,
parameters and headers, with and without the token.

What must hold for each: no 5xx; status code, content type, headers and body as the
schema documents them; 401 without the token; 405 for a method the route lacks.

Two of schemathesis' checks are left out on purpose. "Schema-valid input accepted"
cannot know what the schema cannot say: a task type's own params, a webhook host that
must resolve, an upload that must be an image. "Schema-violating input refused" would
hold DRF to a stricter reading than it has, by design: most string fields take 0, and
an empty list filter or page parameter (`?state=`, `?limit=`) is read as an absent one.
Unknown body fields, an empty date filter and a token name that is no string are
refused (tests/tasks, tests/accounts).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from dramatiq.brokers.stub import StubBroker
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from accounts.models import User
from accounts.services import api_token_create

pytestmark = pytest.mark.slow

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
    unsupported_method,
]


@pytest.fixture
def staff_token(db: None, broker: StubBroker, settings: Any) -> Iterator[str]:
    # Sync submits would wait for a worker that is not running.
    settings.BACKSERV = {**settings.BACKSERV, "WAIT_DEFAULT_SECONDS": 0, "WAIT_MAX_SECONDS": 0}
    # The WSGI app sends Django's request signals, whose handlers would close the test's
    # connection and its transaction with it (Django's test client mutes them the same way).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    staff = User.objects.create_user(username="fuzzer", is_staff=True, is_superuser=True)
    yield api_token_create(user=staff, name="fuzzing", scopes=("read", "write", "admin")).secret
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@hypothesis_settings(
    max_examples=40,
    deadline=None,
    # The same examples on every run: CI fails for the code, never for the dice.
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(case: schemathesis.Case, staff_token: str) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {staff_token}"}, checks=CHECKS)
