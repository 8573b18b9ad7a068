"""The task types a job may have, as the app that runs them installs them.

The jobs layer validates params at submit and groups jobs into batches, but it does not
know the pipelines: generation's AppConfig.ready() installs its specs here (they import
no torch), and everything below generation (the API, the routing of servers) reads them
through these functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol


class TaskTypeSpec(Protocol):
    name: str
    description: str

    def batch_key(self, params: dict[str, Any]) -> str:
        """Jobs with the same non-empty key can run as one pipeline call."""
        ...


# (task_type, params, owner) -> the params with defaults filled in, or InvalidInput.
Validate = Callable[..., dict[str, Any]]

_specs: Mapping[str, TaskTypeSpec] = {}
_validate: Validate | None = None


def install(*, specs: Mapping[str, TaskTypeSpec], validate: Validate) -> None:
    global _specs, _validate
    _specs, _validate = specs, validate


def names() -> list[str]:
    return sorted(_specs)


def known(task_type: str) -> bool:
    return task_type in _specs


def choices() -> list[tuple[str, str]]:
    """For a filter or form field (callable, so it is read once the app has installed its specs)."""
    return [(name, name) for name in names()]


def validate_params(*, task_type: str, params: Any, owner: Any) -> dict[str, Any]:
    """The params of a job of `task_type` with defaults filled in, or InvalidInput
    naming each bad field as `params.<name>` (and `task_type` for an unknown type)."""
    if _validate is None:
        raise RuntimeError("No task types are installed: is the generation app in INSTALLED_APPS?")
    return _validate(task_type=task_type, params=params, owner=owner)


def batch_key(task_type: str, params: dict[str, Any]) -> str:
    return _specs[task_type].batch_key(params)
