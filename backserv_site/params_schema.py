"""A DRF serializer's fields as a JSON Schema (draft 2020-12): what a client can check a
body against before sending it, made from the very serializer that validates it, so
the two cannot drift apart.

What a field says by its arguments is translated (type, bounds, lengths, choices,
default, required, nullable, and no unknown keys for a strict serializer); a check a
serializer makes in code (a validate_<field> method) is not seen here, and whoever
publishes the schema adds what it knows of those.
"""

from __future__ import annotations

import inspect
from typing import Any

from rest_framework import serializers
from rest_framework.fields import empty

from backserv_site.serializers import RefusesUnknownFields

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def serializer_json_schema(serializer_class: type[serializers.Serializer]) -> dict[str, Any]:
    """The JSON Schema of the object a serializer reads."""
    serializer = serializer_class()
    properties: dict[str, Any] = {}
    required = []
    for name, field in serializer.fields.items():
        if field.read_only:
            continue
        properties[name] = field_json_schema(field)
        if field.required:
            required.append(name)
    schema: dict[str, Any] = {"$schema": DIALECT, "type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if isinstance(serializer, RefusesUnknownFields):
        schema["additionalProperties"] = False
    return schema


def field_json_schema(field: serializers.Field) -> dict[str, Any]:
    schema = _typed(field)
    description = field.help_text or _own_description(field)
    if description:
        schema["description"] = str(description)
    if field.default is not empty and not callable(field.default):
        schema["default"] = field.default
    if getattr(field, "allow_null", False) and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    return schema


def _typed(field: serializers.Field) -> dict[str, Any]:
    """The field's type and the bounds its arguments set. Order matters: a choice field
    or a URL field is checked before the kinds it derives from."""
    if isinstance(field, serializers.BooleanField):
        return {"type": "boolean"}
    if isinstance(field, serializers.MultipleChoiceField):
        return {"type": "array", "items": {"enum": list(field.choices)}, "uniqueItems": True}
    if isinstance(field, serializers.ChoiceField):
        return {"enum": list(field.choices)}
    if isinstance(field, serializers.IntegerField):
        return {"type": "integer", **_bounds(field)}
    if isinstance(field, (serializers.FloatField, serializers.DecimalField)):
        return {"type": "number", **_bounds(field)}
    if isinstance(field, serializers.CharField):
        return {"type": "string", **_lengths(field), **_format(field)}
    if isinstance(field, serializers.ListField):
        schema = {"type": "array", "items": field_json_schema(field.child)}
        schema.update(_present({"minItems": field.min_length, "maxItems": field.max_length}))
        return schema
    if isinstance(field, serializers.DictField):
        return {"type": "object", "additionalProperties": field_json_schema(field.child)}
    # JSONField and anything unknown: any JSON value.
    return {}


def _bounds(field: serializers.Field) -> dict[str, Any]:
    return _present({"minimum": getattr(field, "min_value", None), "maximum": getattr(field, "max_value", None)})


def _lengths(field: serializers.CharField) -> dict[str, Any]:
    # A field that refuses "" needs at least one character (spaces trimmed away aside).
    shortest = field.min_length if field.min_length is not None else (0 if field.allow_blank else 1)
    return _present({"minLength": shortest or None, "maxLength": field.max_length})


def _format(field: serializers.CharField) -> dict[str, Any]:
    if isinstance(field, serializers.URLField):
        return {"format": "uri"}
    if isinstance(field, serializers.EmailField):
        return {"format": "email"}
    return {}


def _present(keywords: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in keywords.items() if value is not None}


def _own_description(field: serializers.Field) -> str:
    """The first sentence of a field class's docstring, for a class of ours (DRF's own
    docstrings speak of DRF, not of the value)."""
    kind = type(field)
    if kind.__module__.startswith("rest_framework") or not kind.__doc__:
        return ""
    summary = inspect.cleandoc(kind.__doc__).split("\n\n")[0].replace("\n", " ")
    return summary.split(". ")[0].rstrip(".") + "."
