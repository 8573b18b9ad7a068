"""The database pool's settings, and threads outside requests handing their connection
back to it."""

from __future__ import annotations

import importlib
import threading
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
def test_the_pool_checks_a_connection_only_once_it_sat_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection handed back a moment ago goes out unchecked (the check is a round
    trip of its own); one idle for FRESH_SECONDS is checked first."""
    from psycopg_pool import ConnectionPool

    from backserv_site.db.postgresql import base

    options = {**connection.settings_dict["OPTIONS"], "pool": {"min_size": 1, "max_size": 2}}
    pooled = type(connections["default"])({**connection.settings_dict, "OPTIONS": options}, alias="pool-check-test")
    try:
        assert pooled.pool._check is base._check_unless_fresh and pooled.pool._reset is base._stamp_return
    finally:
        pooled.close_pool()
    checked: list[Any] = []
    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(checked.append))
    connection.ensure_connection()
    raw = connection.connection
    base._check_unless_fresh(raw)  # never handed back: checked
    base._stamp_return(raw)
    base._check_unless_fresh(raw)
    assert checked == [raw]
    base._returned_at[raw] -= base.FRESH_SECONDS
    base._check_unless_fresh(raw)
    assert checked == [raw, raw]
