"""The distributed-system document (shared/seeds/004): what its routes share.

Its routes (/api/task, /api/servers, /api/stats) take JWTs (accounts.jwt) besides our
API tokens and server keys, show times as epoch milliseconds and names in camelCase,
and answer errors as {"error": title, "details": text} with the document's titles
("fields" added for bad input, naming each bad field). The document knows no 409: a
job or server in the wrong state is a 400 here, as in the Back.Serv 000 layer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from django.db.models import Model, QuerySet
from django.http import HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import ApiTokenAuthentication, JwtAuthentication
from accounts.models import Scope
from backserv_site.error_bodies import exception_handler
from backserv_site.errors import NotFound
from servers.authentication import ServerKeyAuthentication
from tasks.api.lookup import one_or_not_found
from tasks.models import TaskState

ModelT = TypeVar("ModelT", bound=Model)

# One way only: each of our states shows as one of the document's.
STATUS_NAMES: dict[str, str] = {
    TaskState.PENDING: "PENDING",
    TaskState.RECEIVED: "PROCESSING",
    TaskState.STARTED: "PROCESSING",
    TaskState.SUCCESS: "COMPLETED",
    TaskState.FAILURE: "FAILED",
    TaskState.REVOKED: "CANCELLED",
    TaskState.TIMEOUT: "TIMEOUT",
}

# The document's error titles, by status; a 409 of ours is its 400.
ERROR_TITLES = {
    400: "Invalid request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    415: "Unsupported media type",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}
INVALID_TOKEN = "Invalid or expired token"
MISSING_TOKEN = "Missing token: send Authorization: Bearer <token>"
ADMIN_REQUIRED = "Admin role required"
UNEXPECTED = "An unexpected error occurred"
_REQUIRED = "This field is required."
# The route prefixes of the document, for the errors Django answers outside DRF.
ROUTE_PREFIXES = ("/api/task", "/api/servers", "/api/stats")


def error_body(status_code: int, details: str, fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": ERROR_TITLES.get(status_code, "Error"), "details": details}
    if fields:
        body["fields"] = fields
    return body


def _details(exc: Exception, context: dict[str, Any], status_code: int, body: dict[str, Any]) -> str:
    if status_code == 401:
        return INVALID_TOKEN if isinstance(exc, exceptions.AuthenticationFailed) else MISSING_TOKEN
    needs_admin = getattr(context.get("view"), "required_scope", None) == Scope.ADMIN
    if status_code == 403 and body.get("code") == "insufficient_scope" and needs_admin:
        return ADMIN_REQUIRED
    if status_code >= 500 and status_code != 503:
        return UNEXPECTED
    fields = body.get("fields") or {}
    missing = [name for name, messages in fields.items() if _REQUIRED in messages]
    if status_code == 400 and missing:
        return f"Missing required field: {missing[0]}"
    return str(body.get("detail", ""))


def distributed_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = exception_handler(exc, context)
    if response is None:
        return None
    status_code = status.HTTP_400_BAD_REQUEST if response.status_code == 409 else response.status_code
    body = response.data
    response.data = error_body(status_code, _details(exc, context, status_code, body), body.get("fields"))
    response.status_code = status_code
    return response


def distributed_path(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in ROUTE_PREFIXES)


def django_error(request: HttpRequest, status_code: int) -> JsonResponse | None:
    """The document's body for a 404 or 500 Django answers itself on its routes (an
    unknown sub-path, a crash outside DRF); None elsewhere."""
    if not distributed_path(request.path):
        return None
    details = UNEXPECTED if status_code == 500 else f"No route {request.path}"
    return JsonResponse(error_body(status_code, details), status=status_code)


class DistributedView(APIView):
    # JWTs and server keys claim only their own shapes, so each token finds its class.
    authentication_classes = [
        JwtAuthentication,
        ServerKeyAuthentication,
        ApiTokenAuthentication,
        SessionAuthentication,
    ]
    # Described by /openapi.json (tasks.compat.distributed.schema), not by Back.Serv's
    # own schema, which leaves views marked so out.
    api_document = "004"

    def get_exception_handler(self) -> Any:
        return distributed_exception_handler


class StaffView(DistributedView):
    """The document's "Admin role required" routes: an admin JWT or a token with the
    admin scope, of a staff user."""

    required_scope = Scope.ADMIN


def epoch_ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def one_found(queryset: QuerySet[ModelT], raw_id: str, label: str) -> ModelT:
    """As tasks.api.lookup.one_or_not_found, with the document's wording."""
    try:
        return one_or_not_found(queryset, raw_id, label)
    except NotFound:
        raise NotFound(f"{label} not found: {raw_id}") from None


def camel_field(name: str) -> str:
    """`max_concurrent` -> `maxConcurrent`, `params.x` -> `payload.x`: an error's field
    under the name the caller sent."""
    if name == "params" or name.startswith("params."):
        return "payload" + name.removeprefix("params")
    if name == "task_type":
        return "type"
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
