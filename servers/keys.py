"""Server keys: shown once at registration, stored only as a keyed hash (the same hash
as users' API tokens, checked with accounts.services.token_hash_check) with a short
public prefix to find the row."""

from __future__ import annotations

import secrets

from accounts.services import token_hash

SERVER_KEY_PREFIX = "bsk_"
_LOOKUP_LENGTH = 8


def server_key_new() -> tuple[str, str, str]:
    """(lookup prefix, full key, its hash)."""
    lookup = secrets.token_hex(_LOOKUP_LENGTH // 2)
    key = f"{SERVER_KEY_PREFIX}{lookup}_{secrets.token_urlsafe(32)}"
    return lookup, key, token_hash(key)


def server_key_lookup(raw: str) -> str | None:
    """The lookup prefix of a raw key, or None when it is not a server key."""
    if not raw.startswith(SERVER_KEY_PREFIX):
        return None
    lookup, separator, _ = raw[len(SERVER_KEY_PREFIX) :].partition("_")
    if not separator or len(lookup) != _LOOKUP_LENGTH:
        return None
    return lookup
