"""Each document names the job's fields its own way; a params error from the specs
(`params.width`) is reported under the name the caller sent (`task_params.width`,
`width`)."""

from __future__ import annotations

from collections.abc import Callable

from backserv_site.errors import InvalidInput


def invalid_input_renamed(error: InvalidInput, rename: Callable[[str], str]) -> InvalidInput:
    fields = {rename(name): messages for name, messages in error.fields.items()}
    message = error.message
    for old, new in zip(error.fields, fields, strict=True):
        if message.startswith(f"{old}:"):
            message = f"{new}:{message[len(old) + 1 :]}"
            break
    return InvalidInput(message, code=error.code, fields=fields)
