"""Domain errors. One DRF exception handler (backserv_site.error_bodies) turns each into the
documented error body: {"detail": message, "code": code, "fields": {...}}."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, fields: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.fields = fields or {}


class InvalidInput(DomainError):
    status_code = 400
    code = "invalid"


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class StateConflict(DomainError):
    status_code = 409
    code = "state_conflict"


class QuotaExceeded(DomainError):
    status_code = 429
    code = "QUOTA_EXCEEDED"


def flatten_validation_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested validation errors as {"a.b.0": [messages]}; "" for the object itself."""
    if isinstance(detail, dict):
        fields: dict[str, list[str]] = {}
        for name, value in detail.items():
            key = prefix if name == "non_field_errors" else (f"{prefix}.{name}" if prefix else str(name))
            fields.update(flatten_validation_errors(value, key))
        return fields
    if isinstance(detail, list) and all(not isinstance(item, (dict, list)) for item in detail):
        return {prefix: [str(item) for item in detail]}
    if isinstance(detail, list):
        fields = {}
        for index, value in enumerate(detail):
            fields.update(flatten_validation_errors(value, f"{prefix}.{index}" if prefix else str(index)))
        return fields
    return {prefix: [str(detail)]}
