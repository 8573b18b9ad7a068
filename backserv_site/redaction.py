"""Keeps credentials that ride in query strings (`?token=` for the event streams,
`?signature=` of download links) out of the logs: the access logs' own lines here, and
every line our formatters write (backserv_site.logs), such as django.request's, whose
`request` field is the full path with its query string."""

from __future__ import annotations

import logging
import re

# `token` is the only credential name the API reads from a query string
# (QueryTokenAuthentication). Matched anywhere, not only after `?` or `&`: a bare query
# string (gunicorn's %(q)s atom) starts with it, and a client's `access_token=` is
# redacted too. The value ends where a URL, a quoted repr or a JSON string does.
_SECRET_IN_QUERY = re.compile(r"((?:token|signature)=)[^&\s\"'#<>]+")
ACCESS_LOGGERS = ("uvicorn.access", "gunicorn.access", "django.server")


def redact(text: str) -> str:
    return _SECRET_IN_QUERY.sub(r"\1[redacted]", text)


class RedactQuerySecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.args, dict):
            # gunicorn's access log passes its atoms as one mapping (a dict subclass
            # whose lookups its format relies on), so it is edited in place.
            for key, value in record.args.items():
                if isinstance(value, str):
                    record.args[key] = redact(value)
        return True


def install_access_log_redaction() -> None:
    for name in ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactQuerySecrets) for existing in logger.filters):
            logger.addFilter(RedactQuerySecrets())
