"""JSON Web Tokens for the distributed-system document's clients (shared/seeds/004):
HS256 with the configured JWT_SECRET, `sub` = username, `role` = admin or user, `exp`
required. Off while JWT_SECRET is unset: a default key would let anyone mint tokens.

A JWT cannot be revoked one by one (rotating JWT_SECRET revokes them all), so it only
opens the 004 routes; Back.Serv's own /api/v1 keeps its revocable, scoped tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from django.conf import settings
from django.db import models

from accounts.models import DEFAULT_SCOPES, Scope, User

ALGORITHM = "HS256"
_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_LIFETIME = re.compile(r"^(\d+)([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Role(models.TextChoices):
    ADMIN = "admin"
    USER = "user"


class JwtRefused(Exception):
    """Why a JWT does not authenticate; the message never repeats the token."""

    def __init__(self, message: str, code: str = "authentication_failed"):
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class JwtGrant:
    """What a verified JWT carries: request.auth on the routes that take JWTs."""

    role: str
    expires_at: datetime

    @property
    def scopes(self) -> list[str]:
        # Admin only counts for a staff user (accounts.permissions.token_scopes drops it
        # otherwise), as for API tokens.
        if self.role == Role.ADMIN:
            return [*DEFAULT_SCOPES, Scope.ADMIN.value]
        return list(DEFAULT_SCOPES)


def jwt_enabled() -> bool:
    return bool(settings.JWT_SECRET)


def looks_like_jwt(raw: str) -> bool:
    """Three base64url segments: never one of our `bs_` / `bsk_` keys."""
    return bool(_SHAPE.match(raw))


def lifetime_parse(raw: str) -> timedelta:
    """ "3600" (seconds), "30m", "12h", "7d", as node's jsonwebtoken takes expiresIn."""
    match = _LIFETIME.match(raw.strip())
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"expected a positive number of seconds or N with s, m, h or d (e.g. 12h, 7d), got {raw!r}")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def jwt_issue(*, user: User, role: str, expires_in: timedelta, now: datetime | None = None) -> str:
    if not jwt_enabled():
        raise ValueError("JWT_SECRET is not set: JWTs are turned off.")
    if role not in Role.values:
        raise ValueError(f"role must be one of {', '.join(Role.values)}, got {role!r}.")
    if role == Role.ADMIN and not user.is_staff:
        raise ValueError(f"{user.username} is not staff: only staff users can hold the admin role.")
    if expires_in <= timedelta(0):
        raise ValueError("The lifetime must be positive.")
    issued_at = now or datetime.now(UTC)
    claims = {"sub": user.get_username(), "role": role, "iat": issued_at, "exp": issued_at + expires_in}
    return jwt.encode(claims, settings.JWT_SECRET, algorithm=ALGORITHM)


def jwt_verify(raw: str) -> tuple[User, JwtGrant]:
    """The active user and grant of a JWT signed with JWT_SECRET, or JwtRefused."""
    if not jwt_enabled():
        raise JwtRefused("JWTs are not accepted here (JWT_SECRET is not set).")
    try:
        # One algorithm only: a token may not choose `none` or a key type of its own.
        claims = jwt.decode(raw, settings.JWT_SECRET, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        raise JwtRefused("Token expired.", "token_expired") from None
    except jwt.InvalidTokenError:
        raise JwtRefused("Invalid token.") from None
    role = claims.get("role", Role.USER)
    if role not in Role.values:
        raise JwtRefused("Invalid token: role must be admin or user.")
    user = User.objects.filter(username=str(claims["sub"]), is_active=True).first()
    if user is None:
        raise JwtRefused("Invalid token: no active user by that name.")
    return user, JwtGrant(role=role, expires_at=datetime.fromtimestamp(claims["exp"], tz=UTC))
