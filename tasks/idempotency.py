"""Idempotent submits: a client that retries a submit (a timeout, a dropped
connection) with the same Idempotency-Key gets the job it already made, not a second.

Keys are per owner and live IDEMPOTENCY_WINDOW_SECONDS (24 h); the request body's
fingerprint tells a true retry (same body: the original job) from a reused key (409).
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from accounts.models import User
from backserv_site.errors import StateConflict
from tasks.models import Task
from tasks.services import task_submit

MAX_KEY_LENGTH = 255


def request_fingerprint(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(task: Task, fingerprint: str) -> Task:
    if task.request_fingerprint != fingerprint:
        raise StateConflict(
            "This Idempotency-Key was used with a different request body; use a new key for a new job.",
            code="idempotency_key_reused",
        )
    return task


def task_submit_idempotent(*, owner: User, idempotency_key: str, fingerprint: str, **submit: Any) -> tuple[Task, bool]:
    """The job for this key: (the original, False) or (a new one, True)."""
    window_start = timezone.now() - timedelta(seconds=settings.BACKSERV["IDEMPOTENCY_WINDOW_SECONDS"])
    existing = Task.objects.filter(owner=owner, idempotency_key=idempotency_key).first()
    if existing is not None:
        if existing.submitted_at >= window_start:
            return _replay(existing, fingerprint), False
        # Expired: the key is free again.
        Task.objects.filter(pk=existing.pk, idempotency_key=idempotency_key).update(idempotency_key="")
    try:
        # The submit is a transaction (or one statement) of its own: a key taken
        # meanwhile fails it whole, and nothing else.
        task = task_submit(owner=owner, idempotency_key=idempotency_key, request_fingerprint=fingerprint, **submit)
    except IntegrityError:
        # A concurrent submit with the same key committed first: it is the original.
        return _replay(Task.objects.get(owner=owner, idempotency_key=idempotency_key), fingerprint), False
    return task, True
