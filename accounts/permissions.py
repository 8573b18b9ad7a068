"""Scope enforcement, applied to every API view by default (REST_FRAMEWORK
DEFAULT_PERMISSION_CLASSES), so a new view is covered without doing anything.

- GET, HEAD, OPTIONS need the `read` scope; every other method needs `write`.
- A staff-only view says `required_scope = Scope.ADMIN`: every method then needs the
  `admin` scope, which only staff users hold.
- A browser session (admin, browsable API; CSRF-checked by DRF) carries every scope
  its user may hold: the person is at the keyboard.

Refusals are 403 with code `insufficient_scope` and the scope named in the message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework import exceptions, permissions
from rest_framework.request import Request

from accounts.jwt import JwtGrant
from accounts.models import ApiToken, Scope, User

if TYPE_CHECKING:
    # Imported lazily: DRF imports the permission and throttle classes while
    # rest_framework.views itself is still loading.
    from rest_framework.views import APIView

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def token_scopes(user: User, token: ApiToken | JwtGrant | None) -> frozenset[str]:
    """The scopes a user carries with a token or JWT (None: a browser session, which
    carries every scope its account allows). Admin only ever for a staff user, so a user who
    lost staff status loses it with every token at once."""
    scopes = set(token.scopes) if token is not None else set(Scope.values)
    if not user.is_staff:
        scopes.discard(Scope.ADMIN)
    return frozenset(scopes)


def request_scopes(request: Request) -> frozenset[str]:
    user = request.user
    if not (user and user.is_authenticated):
        return frozenset()
    return token_scopes(user, request.auth if isinstance(request.auth, (ApiToken, JwtGrant)) else None)


def has_admin_access(request: Request) -> bool:
    return Scope.ADMIN in request_scopes(request)


def required_scope(request: Request, view: APIView) -> str:
    declared = getattr(view, "required_scope", None)
    if declared is not None:
        return str(declared)
    return Scope.READ if request.method in _READ_METHODS else Scope.WRITE


class HasScope(permissions.BasePermission):
    def has_permission(self, request: Request, view: APIView) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False  # DRF answers 401 with the authentication challenge
        scope = required_scope(request, view)
        if scope in request_scopes(request):
            return True
        if scope == Scope.ADMIN and not request.user.is_staff:
            message = "This route needs the 'admin' scope, which only staff users can hold."
        else:
            message = f"This request needs a token with the '{scope}' scope."
        raise exceptions.PermissionDenied(message, code="insufficient_scope")
