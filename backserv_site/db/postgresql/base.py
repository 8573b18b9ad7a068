"""Postgres, as django-prometheus instruments it, with a pool that fails fast when the
database is down.

A pool waits up to its timeout for a connection, and while the database is down it
can make none: every request then hung for DATABASE_POOL_TIMEOUT before its 503,
where without a pool the refused connection answered at once. Here the pool is asked
in short waits (the pool's own "timeout", see settings); after each one that comes
back empty, a direct connection attempt tells a database that is down (the error goes
up at once, and the API answers 503) from one that is only busy (every pooled
connection in use: wait on, up to DATABASE_POOL_TIMEOUT in all)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from django.conf import settings
from django_prometheus.db.backends.postgresql import base
from psycopg_pool import PoolTimeout

# A probe's connect: Postgres on a reachable host answers in milliseconds.
PROBE_CONNECT_TIMEOUT_SECONDS = 2


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if self.pool is None:
            return super().get_new_connection(conn_params)
        deadline = time.monotonic() + settings.DATABASE_POOL_TIMEOUT
        while True:
            try:
                return super().get_new_connection(conn_params)
            except PoolTimeout:
                if time.monotonic() >= deadline:
                    raise
                # Raises OperationalError when the database cannot be reached.
                psycopg.connect(**{**conn_params, "connect_timeout": PROBE_CONNECT_TIMEOUT_SECONDS}).close()
