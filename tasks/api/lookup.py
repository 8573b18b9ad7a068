"""Finding the one object a URL names, among those the caller may see."""

from __future__ import annotations

import uuid
from typing import TypeVar

from django.db.models import Model, QuerySet

from backserv_site.errors import NotFound

ModelT = TypeVar("ModelT", bound=Model)


def one_or_not_found(queryset: QuerySet[ModelT], raw_id: str, label: str) -> ModelT:
    """The row of `queryset` whose UUID key is `raw_id`. A malformed id is as not found
    as someone else's object: the API never tells which ids exist for other users."""
    pk = key_or_none(raw_id)
    # At most one row matches a key: no ORDER BY for the database to plan and sort by.
    found = list(queryset.filter(pk=pk).order_by()[:1]) if pk else []
    return found_or_not_found(found[0] if found else None, raw_id, label)


def key_or_none(raw_id: str) -> uuid.UUID | None:
    """The UUID key a URL gives, None if it is malformed."""
    try:
        return uuid.UUID(raw_id)
    except ValueError:
        return None


def found_or_not_found(found: ModelT | None, raw_id: str, label: str) -> ModelT:
    if found is None:
        raise NotFound(f"{label} {raw_id} not found.")
    return found
