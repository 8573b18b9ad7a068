"""The studio document's (shared/seeds/003) error body: {"success": false, "error":
message, "code": CODE, "details": {field: [messages]}} ("details" only for bad input),
with its codes: INVALID_PROMPT, INVALID_PARAMETERS, NOT_FOUND, API_TIMEOUT, API_ERROR,
DATABASE_ERROR, and ours where it names none (UNAUTHORIZED, CONFLICT, ...)."""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import APIView

from backserv_site.error_bodies import exception_handler
from backserv_site.errors import DomainError

_CODES = {
    "not_found": "NOT_FOUND",
    "not_authenticated": "UNAUTHORIZED",
    "authentication_failed": "UNAUTHORIZED",
    "permission_denied": "FORBIDDEN",
    "state_conflict": "CONFLICT",
    "state_changed": "CONFLICT",
    "database_unavailable": "DATABASE_ERROR",
    "internal_error": "API_ERROR",
    "method_not_allowed": "METHOD_NOT_ALLOWED",
    "unsupported_media_type": "INVALID_PARAMETERS",
    "throttled": "RATE_LIMITED",
}


class StudioError(DomainError):
    """An error whose studio code (and status) the view knows already."""

    def __init__(self, message: str, *, code: str, status_code: int = 400, fields: dict[str, list[str]] | None = None):
        super().__init__(message, code=code, fields=fields)
        self.status_code = status_code


def studio_code(code: str, status_code: int, fields: dict[str, list[str]]) -> str:
    if code.isupper():
        return code
    if status_code == 400 and code not in _CODES:
        return "INVALID_PROMPT" if "prompt" in fields else "INVALID_PARAMETERS"
    return _CODES.get(code, code.upper())


def studio_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = exception_handler(exc, context)
    if response is None:
        return None
    body = response.data
    fields = body.get("fields") or {}
    response.data = {
        "success": False,
        "error": str(body.get("detail", "")),
        "code": studio_code(str(body.get("code", "error")), response.status_code, fields),
    }
    if fields:
        response.data["details"] = fields
    return response


class StudioView(APIView):
    # Described by its own document (shared/seeds), not by Back.Serv's OpenAPI schema.
    schema = None

    def get_exception_handler(self) -> Any:
        return studio_exception_handler
