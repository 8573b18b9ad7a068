"""Postgres, as django-prometheus instruments it, with a pool that fails fast when the
database is down.

A pool waits up to its timeout for a connection, and while the database is down it
can make none: every request then hung for DATABASE_POOL_TIMEOUT before its 503,
where without a pool the refused connection answered at once. Here the pool is asked
in short waits (the pool's own "timeout", see settings); after each one that comes
back empty, a direct connection attempt tells a database that is down (the error goes
up at once, and the API answers 503) from one that is only busy (every pooled
connection in use: wait on, up to DATABASE_POOL_TIMEOUT in all).

With CONN_HEALTH_CHECKS the pool checks each connection it hands out, a round trip of
its own: a third of a submit's. Here a connection handed back to the pool less than
FRESH_SECONDS ago goes out unchecked, as one just used successfully. A database restart
within that second fails the one request that takes such a connection (a 503 with
Retry-After, see backserv_site.error_bodies), and the pool replaces it."""

from __future__ import annotations

import time
from typing import Any
from weakref import WeakKeyDictionary

import psycopg
from django.conf import settings
from django_prometheus.db.backends.postgresql import base
from psycopg_pool import ConnectionPool, PoolTimeout

# A probe's connect: Postgres on a reachable host answers in milliseconds.
PROBE_CONNECT_TIMEOUT_SECONDS = 2


# How long after its return to the pool a connection still counts as known good.
FRESH_SECONDS = 1.0

_returned_at: WeakKeyDictionary[psycopg.Connection, float] = WeakKeyDictionary()


def _stamp_return(conn: psycopg.Connection) -> None:
    _returned_at[conn] = time.monotonic()


def _check_unless_fresh(conn: psycopg.Connection) -> None:
    returned = _returned_at.get(conn)
    if returned is None or time.monotonic() - returned >= FRESH_SECONDS:
        ConnectionPool.check_connection(conn)


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> ConnectionPool | None:
        pool = super().pool
        # Django gives the pool its check and no reset; both are the pool's own
        # callbacks, swapped here once per pool.
        if pool is not None and pool._check is ConnectionPool.check_connection and pool._reset is None:
            pool._reset, pool._check = _stamp_return, _check_unless_fresh
        return pool

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
