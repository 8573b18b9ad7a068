"""Paging of the list routes (`?limit=&offset=`). DRF's own class quietly falls back to
its defaults on a bad value; a client that asked for something else should be told."""

from __future__ import annotations

from typing import Any

from rest_framework import pagination
from rest_framework.request import Request

from backserv_site.errors import InvalidInput


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    # One page is one query and one response: a bounded size keeps both bounded.
    max_limit = 1000

    def get_limit(self, request: Request) -> int:
        return self._whole_number(request, self.limit_query_param, default=self.default_limit, minimum=1)

    def get_offset(self, request: Request) -> int:
        return self._whole_number(request, self.offset_query_param, default=0, minimum=0)

    def _whole_number(self, request: Request, name: str, *, default: int, minimum: int) -> int:
        raw = request.query_params.get(name, "")
        if raw == "":
            # Like the filters: an empty parameter is an absent one (HTML forms send them).
            return default
        maximum = self.max_limit if name == self.limit_query_param else None
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            message = f"Must be a whole number {bounds}, got {raw!r}."
            raise InvalidInput(f"{name}: {message}", fields={name: [message]})
        return value

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        bounds = {
            self.limit_query_param: {"minimum": 1, "maximum": self.max_limit},
            self.offset_query_param: {"minimum": 0},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters
