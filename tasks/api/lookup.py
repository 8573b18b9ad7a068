"""Finding the one object a URL names, among those the caller may see."""

from __future__ import annotations

import uuid
from typing import TypeVar

from django.db.models import Model, QuerySet

from tasks.errors import NotFound

ModelT = TypeVar("ModelT", bound=Model)


def one_or_not_found(queryset: QuerySet[ModelT], raw_id: str, label: str) -> ModelT:
    """The row of `queryset` whose UUID key is `raw_id`. A malformed id is as not found
    as someone else's object: the API never tells which ids exist for other users."""
    try:
        pk = uuid.UUID(raw_id)
    except ValueError:
        pk = None
    found = queryset.filter(pk=pk).first() if pk else None
    if found is None:
        raise NotFound(f"{label} {raw_id} not found.")
    return found
