"""Other API documents' names for a submit to /api/v1/tasks (and each job of a batch).

The route is Back.Serv's own and speaks `task_type` and `params`. A document whose
clients send their own names to it (the task manager's task_name/args/kwargs, Back.Serv
000's task_params) registers a SubmitDialect from its AppConfig.ready(); the submit body
then takes those names too: documented in the schema, known to the strict body, and
read into ours before the job is submitted. Nothing here imports a document: they
register into it (tasks/compat).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from rest_framework import serializers


class Translate(Protocol):
    def __call__(self, *, body: dict[str, Any], task_type: str, params: Any, params_name: str) -> tuple[str, Any]:
        """The job's (task type, params) in our names. `body` is the validated body in
        every dialect's names; `params_name` is the name the params came under."""


def _unchanged(*, body: dict[str, Any], task_type: str, params: Any, params_name: str) -> tuple[str, Any]:
    return task_type, params


@dataclass(frozen=True)
class SubmitDialect:
    name: str
    # Its body fields, made afresh for each serializer (DRF binds a field to one).
    fields: Callable[[], dict[str, serializers.Field]]
    # Which of its fields stand for one of ours: {"kwargs": "params"}. The submit takes
    # one value per field of ours, under any of its names.
    aliases: Mapping[str, str] = field(default_factory=dict)
    translate: Translate = _unchanged


_dialects: dict[str, SubmitDialect] = {}


def submit_dialect_register(dialect: SubmitDialect) -> None:
    """Called from the document's AppConfig.ready(), before any request is read."""
    _dialects[dialect.name] = dialect


def submit_dialects() -> tuple[SubmitDialect, ...]:
    """In the order they registered: their apps' order in INSTALLED_APPS."""
    return tuple(_dialects.values())


def submit_names_for(ours: str) -> tuple[str, ...]:
    """Our field's name, then the registered dialects' names for it."""
    theirs = (alias for dialect in _dialects.values() for alias, target in dialect.aliases.items() if target == ours)
    return (ours, *theirs)
