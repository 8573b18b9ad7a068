from __future__ import annotations

from typing import Any

import pytest
from django.test import Client


@pytest.mark.django_db
def test_health_reports_each_check_without_auth(settings: object) -> None:
    settings.DISTRIBUTED = False  # type: ignore[attr-defined]  # embedded: workers are this process's threads
    settings.SERVERS = {**settings.SERVERS, "REGISTER_WORKERS": False}  # type: ignore[attr-defined]
    response = Client().get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "broker": "ok"}
    assert body["version"]
    assert body["workers"] == "embedded"


@pytest.mark.django_db
def test_health_is_503_naming_the_failing_check(monkeypatch: pytest.MonkeyPatch) -> None:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    unreachable = RedisBroker(url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    monkeypatch.setattr(dramatiq, "get_broker", lambda: unreachable)
    response = Client().get("/health")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"].startswith("error")
    assert response.json()["checks"]["database"] == "ok"


@pytest.mark.django_db
def test_health_reports_workers_without_failing_when_none_heartbeat(settings: object) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from servers.models import Server
    from servers.services import server_register_worker

    settings.SERVERS = {**settings.SERVERS, "REGISTER_WORKERS": True}  # type: ignore[attr-defined]
    assert Client().get("/health").json()["workers"] == "none"
    assert Client().get("/health").status_code == 200

    server = server_register_worker(name="gpu-1", capabilities=["image_creation"], max_concurrent=1)
    assert Client().get("/health").json()["workers"] == "1 online"

    Server.objects.filter(pk=server.pk).update(last_heartbeat_at=timezone.now() - timedelta(hours=1))
    response = Client().get("/health")
    assert response.status_code == 200 and response.json()["workers"] == "none"


@pytest.fixture
def embedded_workers() -> Any:
    from servers.routing import local_workers_present

    local_workers_present()
    yield
    local_workers_present(False)


def test_liveness_answers_without_touching_the_database() -> None:
    # No database in this test: a query would raise, and the probe answer 500.
    response = Client().get("/health/live")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.django_db
def test_readiness_with_embedded_workers_is_ready(embedded_workers: None) -> None:
    response = Client().get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready" and body["missing"] == []
    assert body["checks"] == {"database": "ok", "broker": "ok", "workers": "embedded"}


@pytest.mark.django_db
def test_readiness_is_503_naming_the_missing_worker_until_a_server_takes_jobs(settings: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from servers.models import Server
    from servers.services import server_register_worker, server_set_maintenance

    # Workers that register (the default in a fleet and the embedded mode's servers);
    # the suite's own settings turn registering off, and a fleet run of the suite
    # (BROKER_URL set) would then call its workers unregistered.
    settings.SERVERS = {**settings.SERVERS, "REGISTER_WORKERS": True}
    response = Client().get("/health/ready")
    assert response.status_code == 503
    assert response.json()["missing"] == ["workers"] and response.json()["checks"]["workers"] == "none"

    server = server_register_worker(name="gpu-1", capabilities=["image_creation"], max_concurrent=1)
    response = Client().get("/health/ready")
    assert response.status_code == 200 and response.json()["checks"]["workers"] == "1 online"

    # In maintenance, or silent past its missed heartbeats, it takes no jobs.
    server_set_maintenance(server=server, maintenance=True, reason="driver update")
    assert Client().get("/health/ready").json()["missing"] == ["workers"]
    server_set_maintenance(server=server, maintenance=False, reason="")
    Server.objects.filter(pk=server.pk).update(last_heartbeat_at=timezone.now() - timedelta(hours=1))
    assert Client().get("/health/ready").status_code == 503


@pytest.mark.django_db
def test_readiness_of_a_fleet_whose_workers_do_not_register_does_not_wait_for_them(settings: Any) -> None:
    settings.DISTRIBUTED = True
    settings.SERVERS = {**settings.SERVERS, "REGISTER_WORKERS": False}
    response = Client().get("/health/ready")
    assert response.status_code == 200
    assert response.json()["checks"]["workers"] == "unregistered"


@pytest.mark.django_db
def test_readiness_is_503_naming_the_broker(monkeypatch: pytest.MonkeyPatch, embedded_workers: None) -> None:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    unreachable = RedisBroker(url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    monkeypatch.setattr(dramatiq, "get_broker", lambda: unreachable)
    response = Client().get("/health/ready")
    assert response.status_code == 503
    assert response.json()["missing"] == ["broker"]
    assert response.json()["checks"]["broker"].startswith("error")


@pytest.mark.django_db(transaction=True)
def test_readiness_is_503_naming_the_database_when_it_is_gone(embedded_workers: None) -> None:
    from django.db import connection

    # A database that cannot be opened: the probe's own connection fails, not the test's.
    name = connection.settings_dict["NAME"]
    connection.close()
    connection.settings_dict["NAME"] = "/nonexistent-folder/backserv.sqlite3"
    try:
        response = Client().get("/health/ready")
    finally:
        connection.close()
        connection.settings_dict["NAME"] = name
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert "database" in response.json()["missing"]
