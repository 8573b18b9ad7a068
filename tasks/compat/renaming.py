"""Each document names the job's fields its own way: a params error from the specs
(`params.width`) is reported under the name the caller sent (`task_params.width`,
`width`), and a param the documents name otherwise is read under ours."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backserv_site.errors import InvalidInput


def invalid_input_renamed(error: InvalidInput, rename: Callable[[str], str]) -> InvalidInput:
    fields = {rename(name): messages for name, messages in error.fields.items()}
    message = error.message
    for old, new in zip(error.fields, fields, strict=True):
        if message.startswith(f"{old}:"):
            message = f"{new}:{message[len(old) + 1 :]}"
            break
    return InvalidInput(message, code=error.code, fields=fields)


def image_url_read_as_image(*, task_type: str, params: Any) -> Any:
    """An upscale's `image_url`, Back.Serv 000's name for its image (taken at /api/v1,
    from the task manager's positional args and in 004 payloads too), as our `image`."""
    if task_type != "image_upscale" or not isinstance(params, dict) or "image_url" not in params:
        return params
    if "image" in params:
        message = "Send the image once, as image or image_url."
        raise InvalidInput(
            f"params.image_url: {message}", code="invalid_params", fields={"params.image_url": [message]}
        )
    renamed = dict(params)
    renamed["image"] = renamed.pop("image_url")
    return renamed
