"""Reads whose SQL is compiled once per process, then run with each call's values.

Django builds and compiles a queryset to SQL anew on every evaluation. For most reads
that costs little next to the database's work; for a status poll, whose query carries
four subqueries (queue position, lanes, attempts), compiling took longer than Postgres
took to answer. A `CompiledRead` builds its queryset the first time it runs on a
database, keeps the SQL, and from then on only fills in the values a call changes.

Those values go in slots: `Slot("pk", field)` compiles to a placeholder, and each call's
value for it is prepared for the database by `field`, as a lookup would have prepared
it (a UUID is 32 hex digits on SQLite, a uuid on Postgres).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Expression, Field, Model, QuerySet

ModelT = TypeVar("ModelT", bound=Model)


@dataclass(frozen=True)
class _SlotValue:
    """Where a slot's value goes among the compiled SQL's parameters."""

    name: str
    field: Field


class Slot(Expression):
    """A value given when the read runs, in place of one given when it is built."""

    def __init__(self, name: str, field: Field):
        super().__init__(output_field=field)
        self.name = name

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        return "%s", [_SlotValue(self.name, self.output_field)]


class CompiledSql(Generic[ModelT]):
    """`build()` returns the queryset, with a `Slot` for each value a call gives; call
    it with those values by name to get the SQL and its parameters, to run as it is or
    within a statement of one's own (tasks.services.submit_statement)."""

    def __init__(self, build: Callable[[], QuerySet[ModelT]]):
        self._build = build
        # By database vendor: the SQL differs between SQLite and Postgres.
        self._compiled: dict[str, tuple[type[ModelT], str, list[Any]]] = {}

    def compiled(self) -> tuple[type[ModelT], str, list[Any]]:
        connection = connections[DEFAULT_DB_ALIAS]
        compiled = self._compiled.get(connection.vendor)
        if compiled is None:
            queryset = self._build()
            sql, params = queryset.query.sql_with_params()
            # Two threads compiling at once both store the same thing.
            compiled = self._compiled[connection.vendor] = (queryset.model, sql, list(params))
        return compiled

    def __call__(self, **values: Any) -> tuple[str, list[Any]]:
        connection = connections[DEFAULT_DB_ALIAS]
        _, sql, params = self.compiled()
        bound = [
            param.field.get_db_prep_value(values[param.name], connection) if isinstance(param, _SlotValue) else param
            for param in params
        ]
        return sql, bound


class CompiledRead(CompiledSql[ModelT]):
    """A CompiledSql run: the rows, as model instances carrying the queryset's
    annotations."""

    def __call__(self, **values: Any) -> list[ModelT]:  # type: ignore[override]
        model = self.compiled()[0]
        sql, bound = super().__call__(**values)
        return list(model._default_manager.raw(sql, bound))


class CompiledReads(Generic[ModelT]):
    """A CompiledRead per value of something that is part of the SQL itself, not a slot
    (a LIMIT, a quota's bound): `build(key)` returns the queryset for that value. Few
    values are in use (four times the free slots, the quotas operators give), each
    compiled once.
    Call with the key and the slots' values."""

    def __init__(self, build: Callable[[int], QuerySet[ModelT]]):
        self._build = build
        self._reads: dict[int, CompiledRead[ModelT]] = {}

    def __call__(self, key: int, **values: Any) -> list[ModelT]:
        read = self._reads.get(key)
        if read is None:
            # Two threads building at once both store an equal read.
            read = self._reads[key] = CompiledRead(lambda: self._build(key))
        return read(**values)
