from __future__ import annotations

import pytest
from django.test import Client


@pytest.mark.django_db
def test_health_reports_each_check_without_auth() -> None:
    response = Client().get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "broker": "ok"}
    assert body["version"]


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
