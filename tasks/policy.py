"""How long a job may wait and run, and which failures are worth another attempt.
Pure functions of settings, so services and the runner share one answer."""

from __future__ import annotations

import random

from django.conf import settings

# Failures of the machine, not of the job: another attempt (maybe on another worker)
# can succeed. Bad params, a missing face, an unusable input image fail the same way
# every time and are never retried.
RETRYABLE_ERROR_CODES = frozenset(
    {"WORKER_LOST", "OUT_OF_MEMORY", "TRANSIENT_IO", "REMOTE_SERVER_ERROR", "INPUT_FETCH_UNAVAILABLE"}
)

MAX_ATTEMPTS_LIMIT = 10
QUEUE_TIMEOUT_LIMIT_SECONDS = 86_400

_random = random.SystemRandom()


def _by_type(name: str, task_type: str) -> float:
    per_type: dict[str, float] = settings.BACKSERV[name]
    return per_type.get(task_type, per_type["default"])


def queue_timeout_seconds(task_type: str) -> int:
    return max(1, round(_by_type("QUEUE_TIMEOUT_SECONDS", task_type)))


def run_time_limit_seconds(task_type: str) -> float:
    return _by_type("RUN_TIME_LIMIT_SECONDS", task_type)


def is_retryable(code: str) -> bool:
    return code in RETRYABLE_ERROR_CODES


def retry_delay_seconds(attempt: int, *, rng: random.Random = _random) -> float:
    """Backoff before the attempt after `attempt` (1-based): BASE * 2^(attempt-1),
    capped at the maximum, then between half and all of it at random."""
    base = settings.BACKSERV["RETRY_BACKOFF_SECONDS"]
    ceiling = min(settings.BACKSERV["RETRY_BACKOFF_MAX_SECONDS"], base * 2 ** max(0, attempt - 1))
    return ceiling * rng.uniform(0.5, 1.0)
