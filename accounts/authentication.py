from __future__ import annotations

import hmac

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts.models import ApiToken, User
from accounts.services import split_token, token_hash

_KEYWORDS = (b"bearer", b"token")


def token_owner(raw: str) -> tuple[User, ApiToken] | None:
    """The active user a raw token string belongs to, or None."""
    lookup = split_token(raw)
    if lookup is None:
        return None
    token = ApiToken.objects.select_related("user").filter(prefix=lookup).first()
    # Compare even when no row matched so the timing does not tell prefixes apart.
    expected = token.key_hash if token else token_hash("")
    if not hmac.compare_digest(expected, token_hash(raw)) or token is None or not token.user.is_active:
        return None
    return token.user, token


def token_from_authorization(header: bytes) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, or None."""
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() not in _KEYWORDS:
        return None
    try:
        return parts[1].decode()
    except UnicodeDecodeError:
        return None


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <token>` (or `Token <token>`) with a Back.Serv API token."""

    def authenticate(self, request: Request) -> tuple[User, ApiToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() not in _KEYWORDS:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: expected '<scheme> <token>'.")
        try:
            raw = header[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        found = token_owner(raw)
        if found is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        return found

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class QueryTokenAuthentication(ApiTokenAuthentication):
    """`?token=<token>`, for the streams only: browsers' EventSource and WebSocket
    cannot set an Authorization header."""

    def authenticate(self, request: Request) -> tuple[User, ApiToken] | None:
        raw = request.query_params.get("token")
        if raw is None:
            return None
        found = token_owner(raw)
        if found is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        return found
