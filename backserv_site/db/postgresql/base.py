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
its own: a third of a submit's. Here it first looks at the connection's socket, which
costs no round trip: an idle connection has nothing to read unless the server has
spoken (a restart's "terminating connection", or its end). Only then, or if the
connection is not idle, is it checked, and if broken replaced before any request gets
it."""

from __future__ import annotations

import select
import time
from typing import Any

import psycopg
from django.conf import settings
from django_prometheus.db.backends.postgresql import base
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

# A probe's connect: Postgres on a reachable host answers in milliseconds.
PROBE_CONNECT_TIMEOUT_SECONDS = 2


def _check_if_stirred(conn: psycopg.Connection) -> None:
    """The pool's check: a round trip only for a connection whose server has spoken."""
    if not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
        if not readable:
            return
    ConnectionPool.check_connection(conn)


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> ConnectionPool | None:
        pool = super().pool
        # Django gives the pool its check: the pool's own callback, swapped once.
        if pool is not None and pool._check is ConnectionPool.check_connection:
            pool._check = _check_if_stirred
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
