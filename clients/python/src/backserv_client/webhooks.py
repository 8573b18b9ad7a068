"""Checking Back.Serv's webhooks, which are signed the Standard Webhooks way:
`webhook-signature: v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`
keyed with the base64 part of your `whsec_` secret (GET /api/v1/webhook-secret).

A receiver must check the raw body as received (before any JSON parsing) and refuse old
timestamps: a captured delivery replayed later must not pass.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from backserv_client.errors import WebhookVerificationError

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_SECONDS = 300


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"Missing {name} header.")


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise WebhookVerificationError("The secret is not a whsec_ secret (base64 after the prefix).") from None


def _timestamp(raw: str, tolerance_seconds: float, now: float) -> None:
    try:
        sent_at = int(raw)
    except ValueError:
        raise WebhookVerificationError(f"webhook-timestamp is not Unix seconds: {raw!r}.") from None
    if abs(now - sent_at) > tolerance_seconds:
        # Too old is a replay; too new is a clock or a forgery: both are refused.
        raise WebhookVerificationError(
            f"webhook-timestamp is {now - sent_at:+.0f}s from now, outside the {tolerance_seconds:g}s tolerance."
        )


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> Any:
    """The webhook's JSON payload, once its signature and timestamp check out; raises
    WebhookVerificationError otherwise. `headers` may be any mapping (names are matched
    case-insensitively); `body` must be the raw bytes received."""
    raw_body = body.encode() if isinstance(body, str) else body
    delivery_id = _header(headers, "webhook-id")
    timestamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    _timestamp(timestamp, tolerance_seconds, time.time())
    digest = hmac.new(_key(secret), f"{delivery_id}.{timestamp}.".encode() + raw_body, hashlib.sha256).digest()
    expected = base64.b64encode(digest).decode()
    # Several space-separated signatures may come while a secret is rotated.
    for candidate in signatures.split():
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return json.loads(raw_body)
    raise WebhookVerificationError("No signature matches: wrong secret or altered body.")
