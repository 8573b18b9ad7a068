"""One error body for the whole API: {"detail": message, "code": machine code,
"fields": {field: [messages]}} ("fields" only for bad input). Never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from backserv_site.errors import DomainError, flatten_validation_errors

logger = logging.getLogger(__name__)


def error_body(*, detail: str, code: str, fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": detail, "code": code}
    if fields:
        body["fields"] = fields
    return body


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    if isinstance(exc, DomainError):
        return Response(error_body(detail=exc.message, code=exc.code, fields=exc.fields), status=exc.status_code)
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(
            error_body(detail=f"The request body is larger than the limit of {limit} bytes.", code="request_too_large"),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, Http404):
        return Response(error_body(detail="Not found.", code="not_found"), status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.error("database unavailable: %s", exc)
        return Response(
            error_body(detail="The database is unavailable; try again shortly.", code="database_unavailable"),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        if isinstance(exc, DatabaseError):
            logger.exception("database error")
        else:
            logger.exception("unhandled error in %s", context.get("view"))
        return Response(
            error_body(detail="Internal server error.", code="internal_error"),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_validation_errors(exc.detail)
        first_name, first_messages = next(iter(fields.items()), ("", ["Invalid input."]))
        detail = f"{first_name}: {first_messages[0]}" if first_name else first_messages[0]
        response.data = error_body(detail=detail, code="invalid", fields=fields)
        return response
    if isinstance(exc, exceptions.Throttled):
        # DRF has already set Retry-After from the throttle's wait.
        response.data = error_body(detail=str(exc.detail), code="rate_limited")
        return response
    if isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        response.data = error_body(detail=str(exc.detail), code=str(code))
    return response
