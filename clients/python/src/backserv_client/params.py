"""Job params from the command line: `-p KEY=VALUE` pairs over an optional JSON object.

VALUE is read as JSON where it parses (`steps=4` is the number 4, `seed=null` is null,
`prompt='"42"'` the string "42") and is taken as a plain string otherwise
(`prompt=a red fox`). An image param naming a file on this machine becomes a Path,
which the client uploads before submitting.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# The params the task types take an image in (docs/api.md, "Task types").
IMAGE_PARAMS = frozenset({"image", "image_url", "source_image", "target_image"})
# What the server itself reads in an image param: never taken for a local file name.
REFERENCE_PREFIXES = ("http://", "https://", "data:", "upload:", "task:")


class ParamError(ValueError):
    """A -p pair or --json-params that cannot be read."""


def parse_param(pair: str) -> tuple[str, Any]:
    name, separator, raw = pair.partition("=")
    name = name.strip()
    if not separator or not name:
        raise ParamError(f"-p takes KEY=VALUE, got {pair!r}.")
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def build_params(pairs: Iterable[str], json_params: str | None = None) -> dict[str, Any]:
    """The params object: --json-params first, each -p pair over it."""
    params: dict[str, Any] = {}
    if json_params:
        try:
            loaded = json.loads(json_params)
        except ValueError as error:
            raise ParamError(f"--json-params is not JSON: {error}.") from None
        if not isinstance(loaded, dict):
            raise ParamError("--json-params must be a JSON object.")
        params.update(loaded)
    for pair in pairs:
        name, value = parse_param(pair)
        params[name] = value
    return params


def with_local_images(params: dict[str, Any]) -> dict[str, Any]:
    """Image params that name an existing local file, as Paths (uploaded on submit)."""
    return {name: _local_file(value) if name in IMAGE_PARAMS else value for name, value in params.items()}


def _local_file(value: Any) -> Any:
    if not isinstance(value, str) or value.startswith(REFERENCE_PREFIXES):
        return value
    path = Path(value).expanduser()
    return path if path.is_file() else value
