from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from accounts.models import ApiToken, User

TOKEN_PREFIX = "bs_"
_PREFIX_LENGTH = 8


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # the full token string; shown to the user once, never stored


def token_hash(secret: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), secret.encode(), hashlib.sha256).hexdigest()


def split_token(raw: str) -> str | None:
    """The lookup prefix of a raw token string, or None when it is not one of ours."""
    if not raw.startswith(TOKEN_PREFIX):
        return None
    body = raw[len(TOKEN_PREFIX) :]
    lookup, separator, _ = body.partition("_")
    if not separator or len(lookup) != _PREFIX_LENGTH:
        return None
    return lookup


@transaction.atomic
def api_token_create(*, user: User, name: str = "") -> IssuedToken:
    lookup = secrets.token_hex(_PREFIX_LENGTH // 2)
    secret = f"{TOKEN_PREFIX}{lookup}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(user=user, name=name, prefix=lookup, key_hash=token_hash(secret))
    return IssuedToken(token=token, secret=secret)


@transaction.atomic
def user_ensure(*, username: str, is_staff: bool = False) -> User:
    user, _ = User.objects.get_or_create(username=username, defaults={"is_staff": is_staff})
    if is_staff and not (user.is_staff and user.is_superuser):
        user.is_staff = True
        user.is_superuser = True
        user.save(update_fields=["is_staff", "is_superuser"])
    return user
