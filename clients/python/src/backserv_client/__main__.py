"""`python -m backserv_client` is the `backserv` command."""

from __future__ import annotations

from backserv_client.cli import entry_point

entry_point()
