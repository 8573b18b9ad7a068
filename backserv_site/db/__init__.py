"""Database connections of threads that live outside Django's request cycle: the
streams' read pool, the sweeper, the heartbeat. Django returns a request's connection
when the request finishes; these threads have no such end, so they say when a piece
of work is done."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from django.db import InterfaceError, OperationalError, close_old_connections, connection

T = TypeVar("T")


def database_pooled() -> bool:
    """Whether this process's Postgres connections come from a pool (DATABASE_POOL_SIZE)."""
    return bool(connection.settings_dict.get("OPTIONS", {}).get("pool"))


def connection_done() -> None:
    """A unit of work on a long-lived thread is over. Pooled, the thread's connection
    goes back to the pool, warm, for whoever needs one next: a thread that kept it
    would hold a pool slot while it sleeps. Not pooled, it is kept for reuse while it
    is younger than CONN_MAX_AGE, as a request's would be."""
    if database_pooled():
        connection.close()
    else:
        close_old_connections()


@contextmanager
def connection_work() -> Iterator[None]:
    """One unit of work on a long-lived thread: a kept connection past its age or
    broken is dropped before it, and the connection is done with after it."""
    close_old_connections()
    try:
        yield
    finally:
        connection_done()


def retried_on_reconnect(work: Callable[[], T], *, attempts: int, pause_seconds: float) -> T:
    """`work`'s result, trying it again on a fresh connection after the database failed
    it (a restart, a dropped connection, a failover): up to `attempts` tries, pausing a
    little longer before each. Only for work outside a transaction, which can start over."""
    for attempt in range(1, attempts):
        try:
            return work()
        except (OperationalError, InterfaceError):
            # The broken connection is dropped; the next query opens another.
            connection.close()
            time.sleep(pause_seconds * attempt)
    return work()
