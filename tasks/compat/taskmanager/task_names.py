"""The task-manager document's (shared/seeds/002) task names that are not our task
types, and how their positional `args` become params.

`image_super_resolution_pipeline` is an upscale: args[0] is the input image URL,
args[1] an optional URL the worker PUTs the result image to (generation.delivery).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from backserv_site.errors import InvalidInput
from generation.delivery import url_refusal_at_submit
from generation.specs import TASK_TYPES
from tasks.compat.renaming import image_url_read_as_image


@dataclass(frozen=True)
class TaskAlias:
    task_type: str
    # The params each positional argument fills, in order.
    positional: tuple[str, ...]


ALIASES: dict[str, TaskAlias] = {
    "image_super_resolution_pipeline": TaskAlias(task_type="image_upscale", positional=("image_url", "output_url")),
}


def _bad_args(message: str, field: str = "args") -> InvalidInput:
    return InvalidInput(f"{field}: {message}", fields={field: [message]})


def _http_url(value: Any, field: str) -> str:
    if not isinstance(value, str) or urlsplit(value).scheme not in {"http", "https"} or not urlsplit(value).netloc:
        raise _bad_args("Must be an http(s) URL.", field)
    refusal = url_refusal_at_submit(value)
    if refusal:
        raise _bad_args(refusal, field)
    return value


def resolve_task_name(*, name: str, args: list[Any], params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(task type, params) for a task-manager submit. A name that is one of our task
    types takes no positional args; an alias maps them to its params."""
    alias = ALIASES.get(name)
    if alias is None:
        if args:
            raise _bad_args(f"{name} takes no positional args; send its params as kwargs.")
        return name, params
    if len(args) > len(alias.positional):
        raise _bad_args(f"{name} takes at most {len(alias.positional)} args ({', '.join(alias.positional)}).")
    if not args and alias.positional[0] not in params:
        raise _bad_args(f"{name} needs args[0]: the input image URL.")
    named = dict(params)
    for index, (param, value) in enumerate(zip(alias.positional, args, strict=False)):
        if param in named:
            raise _bad_args(f"{param} is given both as args[{index}] and in kwargs.")
        named[param] = _http_url(value, f"args.{index}")
    if alias.task_type not in TASK_TYPES:
        raise InvalidInput(
            f"Task type not available: {name} runs {alias.task_type}, which this server does not have.",
            code="task_type_unavailable",
            fields={"task_name": [f"Not available on this server ({alias.task_type} is not installed)."]},
        )
    return alias.task_type, image_url_read_as_image(task_type=alias.task_type, params=named)
