"""The database pool's settings, and threads outside requests handing their connection
back to it."""

from __future__ import annotations

import importlib
import select
import threading
import time
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, connections

import backserv_site.db
from backserv_site import settings as site_settings
from tasks.models import Task


def _databases_with(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    """DATABASES as the settings make it from this environment."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        return importlib.reload(site_settings).DATABASES
    finally:
        for name in env:
            monkeypatch.delenv(name)
        importlib.reload(site_settings)


def test_postgres_connections_come_from_a_pool_of_the_configured_size(monkeypatch: pytest.MonkeyPatch) -> None:
    databases = _databases_with(monkeypatch, DATABASE_URL="postgres://u@db:5432/backserv", DATABASE_POOL_SIZE="7")
    database = databases["default"]

    assert database["ENGINE"] == "backserv_site.db.postgresql"
    assert database["OPTIONS"]["pool"]["max_size"] == 7
    assert database["CONN_MAX_AGE"] == 0
    assert database["CONN_HEALTH_CHECKS"] is True  # the pool checks what it hands out


def test_a_pool_size_of_0_turns_the_pool_off(monkeypatch: pytest.MonkeyPatch) -> None:
    databases = _databases_with(monkeypatch, DATABASE_URL="postgres://u@db:5432/backserv", DATABASE_POOL_SIZE="0")

    assert "pool" not in databases["default"].get("OPTIONS", {})


def test_kept_connections_and_a_pool_together_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ImproperlyConfigured, match="DATABASE_POOL_SIZE=0"):
        _databases_with(monkeypatch, DATABASE_URL="postgres://u@db:5432/backserv", DATABASE_CONN_MAX_AGE="60")


def test_sqlite_has_no_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    databases = _databases_with(monkeypatch, DATABASE_URL="sqlite:////tmp/backserv-pool-test.sqlite3")

    assert "pool" not in databases["default"]["OPTIONS"]


@pytest.mark.django_db(transaction=True)
def test_a_long_lived_thread_hands_its_connection_back_after_its_work_when_pooled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backserv_site.db, "database_pooled", lambda: True)
    seen: dict[str, Any] = {}

    def heartbeat_like() -> None:
        Task.objects.count()
        seen["during"] = connection.connection is not None
        backserv_site.db.connection_done()
        seen["after"] = connection.connection is not None

    thread = threading.Thread(target=heartbeat_like)
    thread.start()
    thread.join()

    assert seen == {"during": True, "after": False}


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the pool is Postgres's")
def test_the_pool_checks_a_connection_only_once_its_server_has_spoken(monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle connection with nothing to read goes out unchecked (the check is a round
    trip of its own); one whose server ended it is checked, and the check fails."""
    import psycopg
    from psycopg_pool import ConnectionPool

    from backserv_site.db.postgresql import base

    options = {**connection.settings_dict["OPTIONS"], "pool": {"min_size": 1, "max_size": 2}}
    pooled = type(connections["default"])({**connection.settings_dict, "OPTIONS": options}, alias="pool-check-test")
    try:
        assert pooled.pool._check is base._check_if_stirred
    finally:
        pooled.close_pool()
    checked: list[Any] = []
    check = ConnectionPool.check_connection

    def counted(conn: Any) -> None:
        checked.append(conn)
        check(conn)

    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(counted))
    params = {**connection.get_connection_params(), "autocommit": True}
    with psycopg.connect(**params) as idle:
        base._check_if_stirred(idle)
        assert checked == []
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [idle.info.backend_pid])
        deadline = time.monotonic() + 10
        while not select.select([idle.fileno()], [], [], 0.1)[0] and time.monotonic() < deadline:
            pass
        with pytest.raises(psycopg.OperationalError):
            base._check_if_stirred(idle)
        assert checked == [idle]
