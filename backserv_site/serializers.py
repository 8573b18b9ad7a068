"""Request-body strictness: a field a body does not know, or a string field sent as
another JSON type, is a 400 naming it, so a misspelt or mistyped field is an error
rather than a silently ignored default.

Back.Serv's own API (/api/v1) reads every body this way, and every route reads a task
type's params this way (generation.specs). The served documents' bodies (tasks/compat)
keep DRF's lenient reading at the top level: their clients, written against other
systems, may send fields we do not know.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import Direction
from rest_framework import serializers

if TYPE_CHECKING:
    from drf_spectacular.openapi import AutoSchema


# Comments, not docstrings, on these bases: drf-spectacular describes a serializer
# without a docstring of its own by the nearest one among its bases.


# For a Serializer: a top-level key it does not declare is refused, each named with the
# keys it knows.
class RefusesUnknownFields:
    unknown_field_message = "Unknown field."

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = sorted(self.fields)  # type: ignore[attr-defined]
            unknown = sorted(set(data) - set(known))
            if unknown:
                listed = f"Known: {', '.join(known)}." if known else "This route takes no fields."
                message = f"{self.unknown_field_message} {listed}"
                raise serializers.ValidationError({name: [message] for name in unknown})
        return super().to_internal_value(data)  # type: ignore[misc]


# The base of every /api/v1 request body.
class StrictSerializer(RefusesUnknownFields, serializers.Serializer):
    pass


class StrictSerializerSchema(OpenApiSerializerExtension):
    """Documents the refusal: a strict body's schema allows no other properties."""

    target_class = RefusesUnknownFields
    match_subclasses = True

    def map_serializer(self, auto_schema: AutoSchema, direction: Direction) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["additionalProperties"] = False
        return schema


class NoBodySerializer(StrictSerializer):
    """The body of a route that takes none: empty, or an object with no fields."""


class JsonStringField(serializers.CharField):
    """A string that must arrive as a JSON string: DRF's CharField would turn 0 into
    "0", which the schema (type: string) does not allow."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)
