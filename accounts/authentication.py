from __future__ import annotations

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts.jwt import JwtGrant, JwtRefused, jwt_verify, looks_like_jwt
from accounts.models import ApiToken, User
from accounts.services import api_token_rehash, api_token_touch, split_token, token_hash_check

_KEYWORDS = (b"bearer", b"token")


class TokenRefused(Exception):
    """Why a raw token string does not authenticate; the message never repeats it."""

    def __init__(self, message: str, code: str = "authentication_failed"):
        super().__init__(message)
        self.message = message
        self.code = code


def token_verify(raw: str) -> tuple[User, ApiToken]:
    """The active user and live token a raw token string belongs to (recording the
    use), or TokenRefused: unknown, wrong secret, revoked, expired, inactive user."""
    lookup = split_token(raw)
    if lookup is None:
        raise TokenRefused("Invalid token.")
    token = ApiToken.objects.select_related("user").filter(prefix=lookup).first()
    current_hash = token_hash_check(raw=raw, key_hash=token.key_hash if token else None)
    if current_hash is None or token is None:
        raise TokenRefused("Invalid token.")
    if current_hash != token.key_hash:
        api_token_rehash(token=token, key_hash=current_hash)
    if token.revoked_at is not None:
        raise TokenRefused("Token revoked.", "token_revoked")
    if token.expires_at is not None and token.expires_at <= timezone.now():
        raise TokenRefused("Token expired.", "token_expired")
    if not token.user.is_active:
        raise TokenRefused("User inactive or deleted.")
    api_token_touch(token=token)
    return token.user, token


def token_owner(raw: str) -> tuple[User, ApiToken] | None:
    """The active user a raw token string belongs to, or None."""
    try:
        return token_verify(raw)
    except TokenRefused:
        return None


def token_from_authorization(header: bytes) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, or None."""
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() not in _KEYWORDS:
        return None
    try:
        return parts[1].decode()
    except UnicodeDecodeError:
        return None


def _authenticate(raw: str) -> tuple[User, ApiToken]:
    try:
        return token_verify(raw)
    except TokenRefused as refused:
        raise exceptions.AuthenticationFailed(refused.message, code=refused.code) from None


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <token>` (or `Token <token>`) with a Back.Serv API token.
    The error messages never repeat the token."""

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
        return _authenticate(raw)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class JwtAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <JWT>` (see accounts.jwt). Only claims JWT-shaped tokens,
    so it can stand before the API-token and server-key classes."""

    def authenticate(self, request: Request) -> tuple[User, JwtGrant] | None:
        raw = token_from_authorization(authentication.get_authorization_header(request))
        if raw is None or not looks_like_jwt(raw):
            return None
        try:
            return jwt_verify(raw)
        except JwtRefused as refused:
            raise exceptions.AuthenticationFailed(refused.message, code=refused.code) from None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class QueryTokenAuthentication(ApiTokenAuthentication):
    """`?token=<token>`, for the streams only: browsers' EventSource and WebSocket
    cannot set an Authorization header."""

    def authenticate(self, request: Request) -> tuple[User, ApiToken] | None:
        raw = request.query_params.get("token")
        if raw is None:
            return None
        return _authenticate(raw)
