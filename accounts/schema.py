"""How the OpenAPI schema describes our authentication classes (drf-spectacular finds
these extensions once this module is imported: accounts' AppConfig.ready does that)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiTokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer bs_…` (an API token)."}


class QueryTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.QueryTokenAuthentication"
    name = "queryToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "query",
            "name": "token",
            "description": "The API token as `?token=` (event streams and WebSockets only).",
        }
