"""Every write to users and API tokens."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import DEFAULT_SCOPES, ApiToken, Scope, User
from backserv_site.errors import InvalidInput

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "bs_"
_PREFIX_LENGTH = 8
# last_used_at is a hint for people auditing tokens, not a log: one write a minute
# per token at most, however busy the client.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # the full token string; shown to the user once, never stored


def token_hash(secret: str, *, key: str | None = None) -> str:
    """The stored form of an API token or server key: HMAC-SHA256 under `key`, by
    default SECRET_KEY."""
    signing_key = settings.SECRET_KEY if key is None else key
    return hmac.new(signing_key.encode(), secret.encode(), hashlib.sha256).hexdigest()


def token_hash_check(*, raw: str, key_hash: str | None) -> str | None:
    """The hash to store for `raw` from now on when it matches `key_hash` under
    SECRET_KEY or one of SECRET_KEY_FALLBACKS, else None. After a match under a fallback
    that is the hash under SECRET_KEY: store it, so the fallback can later be dropped
    without revoking the token."""
    keys = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    # Every key is tried, against a placeholder when no row matched, so the timing does
    # not tell prefixes apart.
    expected = key_hash or token_hash("")
    matches = [hmac.compare_digest(expected, token_hash(raw, key=key)) for key in keys]
    if key_hash is None or not any(matches):
        return None
    return key_hash if matches[0] else token_hash(raw)


def split_token(raw: str) -> str | None:
    """The lookup prefix of a raw token string, or None when it is not one of ours."""
    if not raw.startswith(TOKEN_PREFIX):
        return None
    body = raw[len(TOKEN_PREFIX) :]
    lookup, separator, _ = body.partition("_")
    if not separator or len(lookup) != _PREFIX_LENGTH:
        return None
    return lookup


def scopes_clean(*, user: User, scopes: Iterable[str]) -> list[str]:
    """The scopes as stored (known names, no repeats, in a fixed order), or InvalidInput
    naming the field `scopes`."""
    wanted = {str(scope).strip() for scope in scopes}
    unknown = sorted(wanted - set(Scope.values))
    if unknown:
        raise InvalidInput(
            f"Unknown scope {unknown[0]!r}; choose from {', '.join(Scope.values)}.",
            fields={"scopes": [f"Unknown scope {unknown[0]!r}."]},
        )
    if not wanted:
        raise InvalidInput("A token needs at least one scope.", fields={"scopes": ["Give at least one scope."]})
    if Scope.ADMIN in wanted and not user.is_staff:
        message = "Only staff users can hold the admin scope."
        raise InvalidInput(message, fields={"scopes": [message]})
    return [scope for scope in Scope.values if scope in wanted]


@transaction.atomic
def api_token_create(
    *,
    user: User,
    name: str = "",
    scopes: Iterable[str] = DEFAULT_SCOPES,
    expires_at: datetime | None = None,
) -> IssuedToken:
    clean_scopes = scopes_clean(user=user, scopes=scopes)
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("The expiry must be in the future.", fields={"expires_at": ["Must be in the future."]})
    lookup = secrets.token_hex(_PREFIX_LENGTH // 2)
    secret = f"{TOKEN_PREFIX}{lookup}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=lookup,
        key_hash=token_hash(secret),
        scopes=clean_scopes,
        expires_at=expires_at,
    )
    logger.info("api token %s created for user %s with scopes %s", lookup, user.pk, ",".join(clean_scopes))
    return IssuedToken(token=token, secret=secret)


def api_token_rehash(*, token: ApiToken, key_hash: str) -> None:
    """Store the token's hash under the current SECRET_KEY (see token_hash_check). The
    conditional UPDATE makes concurrent requests write once."""
    if ApiToken.objects.filter(pk=token.pk, key_hash=token.key_hash).update(key_hash=key_hash):
        logger.info("api token %s re-hashed under the current SECRET_KEY", token.prefix)
    token.key_hash = key_hash


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Idempotent: revoking a revoked token keeps its first revocation time."""
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db()
    logger.info("api token %s revoked", token.prefix)
    return token


def api_token_touch(*, token: ApiToken) -> None:
    """Record a use. The conditional UPDATE makes concurrent requests write once."""
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    if ApiToken.objects.filter(stale, pk=token.pk).update(last_used_at=now):
        token.last_used_at = now


@transaction.atomic
def user_ensure(*, username: str, is_staff: bool = False) -> User:
    user, _ = User.objects.get_or_create(username=username, defaults={"is_staff": is_staff})
    if is_staff and not (user.is_staff and user.is_superuser):
        user.is_staff = True
        user.is_superuser = True
        user.save(update_fields=["is_staff", "is_superuser"])
    return user
