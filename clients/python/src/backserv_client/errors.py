"""The client's errors. The API's own error body (`detail`, `code`, `fields`) is kept
whole, so a caller can branch on the stable `code` and show the named fields."""

from __future__ import annotations

from typing import Any

import httpx

# Statuses a proxy or a restarting server answers; the same request may well pass later.
RETRY_STATUSES = frozenset({502, 503, 504})


class BackservError(Exception):
    """Anything this package raises on purpose."""


class ApiError(BackservError):
    """The API answered with an error status (4xx/5xx)."""

    def __init__(self, status: int, code: str, detail: str, fields: dict[str, list[str]] | None = None):
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.fields = fields or {}

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        response.read()
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        status = response.status_code
        if isinstance(body, dict) and "code" in body:
            return cls(status, str(body["code"]), str(body.get("detail", "")), body.get("fields"))
        return cls(status, f"http_{status}", response.text.strip()[:500] or f"HTTP {status}")


class ConnectionFailed(BackservError):
    """The server could not be reached (or kept dropping the connection) after retries."""


class WebhookVerificationError(BackservError):
    """A webhook's signature, timestamp or headers did not check out: do not trust it."""
