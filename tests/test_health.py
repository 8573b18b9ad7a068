from __future__ import annotations

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
