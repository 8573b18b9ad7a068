"""How the worker names a run's unexpected error, and so whether the job gets another
attempt."""

from __future__ import annotations

import pytest
from django.db import InterfaceError, OperationalError

from generation.runner import _error_code
from tasks import policy


@pytest.mark.parametrize(
    "error",
    [
        # Postgres restarting under a running job: its next step's check fails.
        OperationalError("terminating connection due to administrator command"),
        InterfaceError("connection already closed"),
        OSError("No space left on device"),
    ],
)
def test_a_failure_of_the_machine_gets_another_attempt(error: Exception) -> None:
    assert policy.is_retryable(_error_code(error))


def test_a_failure_of_the_pipeline_itself_does_not() -> None:
    assert not policy.is_retryable(_error_code(ValueError("bad latents")))
