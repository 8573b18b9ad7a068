"""Keeps credentials that ride in query strings (`?token=` for the event streams,
`?signature=` of download links) out of access logs."""

from __future__ import annotations

import logging
import re

_SECRET_IN_QUERY = re.compile(r"([?&](?:token|signature)=)[^&\s\"]+")
ACCESS_LOGGERS = ("uvicorn.access", "gunicorn.access", "django.server")


def redact(text: str) -> str:
    return _SECRET_IN_QUERY.sub(r"\1[redacted]", text)


class RedactQuerySecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


def install_access_log_redaction() -> None:
    for name in ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactQuerySecrets) for existing in logger.filters):
            logger.addFilter(RedactQuerySecrets())
