"""Per-user rate limits: headers on every authenticated response, 429 with Retry-After
and the error body, a user's tokens sharing one count, extra limits for job creation
and server registration, and exact counting under concurrency in local memory and
Redis."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from rest_framework.test import APIClient

from accounts import throttling
from accounts.models import User
from accounts.services import api_token_create
from backserv_site import settings as shipped_settings
from backserv_site.env import env_rate

SUBMIT = {"task_type": "image_creation", "params": {"prompt": "x", "width": 64, "height": 64, "steps": 2}}


@pytest.fixture
def rates(settings: Any) -> Any:
    """Set the rates, and start the test early in a minute: counts restart with each
    minute, and a test must not straddle two of them."""

    def set_rates(**rates: str | None) -> None:
        defaults = {"user": "100/min", "task_create": "50/min", "server_registration": "10/min"}
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {**defaults, **rates}}
        into_minute = time.time() % 60
        if into_minute > 50:
            time.sleep(60.05 - into_minute)

    return set_rates


def _client(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=user).secret}")
    return client


def test_the_shipped_limits_are_100_50_and_10_a_minute() -> None:
    assert shipped_settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] == {
        "user": "100/min",
        "task_create": "50/min",
        "server_registration": "10/min",
    }


def test_every_api_response_carries_the_rate_limit_headers(rates: Any, client: APIClient) -> None:
    rates()
    before = time.time()
    for remaining in (99, 98):
        response = client.get("/api/v1/tasks")
        assert response.status_code == 200
        assert response["X-RateLimit-Limit"] == "100"
        assert response["X-RateLimit-Remaining"] == str(remaining)
        assert before < int(response["X-RateLimit-Reset"]) <= before + 61
    not_found = client.get("/api/v1/tasks/nope")
    assert not_found.status_code == 404 and not_found["X-RateLimit-Remaining"] == "97"


def test_over_the_limit_it_answers_429_with_retry_after(rates: Any, client: APIClient) -> None:
    rates(user="5/min")
    for _ in range(5):
        assert client.get("/api/v1/tasks").status_code == 200
    response = client.get("/api/v1/tasks")
    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"
    assert set(response.json()) == {"detail", "code"}
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response["X-RateLimit-Limit"] == "5" and response["X-RateLimit-Remaining"] == "0"


def test_a_users_tokens_share_one_count_and_other_users_have_their_own(
    rates: Any, owner: User, other_user: User
) -> None:
    rates(user="4/min")
    first, second = _client(owner), _client(owner)
    for client in (first, second, first, second):
        assert client.get("/api/v1/tasks").status_code == 200
    assert second.get("/api/v1/tasks").status_code == 429
    assert _client(other_user).get("/api/v1/tasks").status_code == 200


def test_job_creation_has_its_own_lower_limit(rates: Any, client: APIClient) -> None:
    rates(task_create="3/min")
    for remaining in (2, 1, 0):
        response = client.post("/api/v1/tasks", SUBMIT, format="json")
        assert response.status_code == 202
        assert response["X-RateLimit-Limit"] == "3" and response["X-RateLimit-Remaining"] == str(remaining)
    refused = client.post("/api/v1/tasks", SUBMIT, format="json")
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
    reading = client.get("/api/v1/tasks")
    assert reading.status_code == 200 and reading["X-RateLimit-Limit"] == "100"


def test_a_batch_uses_one_job_creation_per_job(rates: Any, client: APIClient) -> None:
    rates(task_create="5/min")
    batch = {"tasks": [SUBMIT, SUBMIT, SUBMIT]}
    first = client.post("/api/v1/tasks/batch", batch, format="json")
    assert first.status_code == 200 and first.json()["accepted"] == 3
    assert first["X-RateLimit-Limit"] == "5" and first["X-RateLimit-Remaining"] == "2"
    second = client.post("/api/v1/tasks/batch", batch, format="json")
    assert second.status_code == 429 and second.json()["code"] == "rate_limited"


def test_a_batch_larger_than_the_limit_takes_a_whole_window(rates: Any, client: APIClient) -> None:
    rates(task_create="3/min")
    batch = {"tasks": [SUBMIT] * 5}
    first = client.post("/api/v1/tasks/batch", batch, format="json")
    assert first.status_code == 200 and first.json()["accepted"] == 5
    assert first["X-RateLimit-Remaining"] == "0"
    assert client.post("/api/v1/tasks", SUBMIT, format="json").status_code == 429


@pytest.mark.urls("tests.probe_urls")
def test_a_view_can_take_the_server_registration_limit(rates: Any, staff_client: APIClient) -> None:
    rates()
    for _ in range(10):
        assert staff_client.post("/probe/staff").status_code == 201
    assert staff_client.post("/probe/staff").status_code == 429
    assert staff_client.get("/probe/staff").status_code == 200


def test_an_empty_rate_turns_a_limit_off(rates: Any, client: APIClient) -> None:
    rates(user=None)
    response = client.get("/api/v1/tasks")
    assert response.status_code == 200 and "X-RateLimit-Limit" not in response


def test_refused_anonymous_requests_are_not_counted(rates: Any, anonymous_client: APIClient) -> None:
    rates()
    response = anonymous_client.get("/api/v1/tasks")
    assert response.status_code == 401 and "X-RateLimit-Limit" not in response


@pytest.mark.parametrize("value", ["100", "100/fortnight", "many/min", "-1/min"])
def test_it_refuses_a_malformed_rate_setting(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("RATE_LIMIT_DEFAULT", value)
    with pytest.raises(ImproperlyConfigured, match="RATE_LIMIT_DEFAULT"):
        env_rate("RATE_LIMIT_DEFAULT", "100/min")


def _cache_backends() -> list[Any]:
    backends = [pytest.param({"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}, id="local-memory")]
    url = getattr(django_settings, "CACHE_URL", "")
    marks = [] if url else [pytest.mark.skip(reason="set REDIS_URL or CACHE_URL to test the Redis cache")]
    redis = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
    backends.append(pytest.param(redis, id="redis", marks=marks))
    return backends


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("backend", _cache_backends())
def test_concurrent_requests_are_counted_exactly(rates: Any, settings: Any, owner: User, backend: dict) -> None:
    settings.CACHES = {"default": backend}
    from django.core.cache import cache

    cache.clear()  # a shared Redis may hold counters from an earlier run
    rates(user="50/min")
    secret = api_token_create(user=owner).secret
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def hammer() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        start.wait()
        for _ in range(10):
            status = client.get("/api/v1/tasks").status_code
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(statuses) == 80, statuses
    assert statuses.count(200) == 50 and statuses.count(429) == 30, sorted(statuses)


def test_it_keeps_answering_and_limiting_when_the_shared_cache_is_away(
    rates: Any, settings: Any, owner: User, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        closed_port = listener.getsockname()[1]
    # A Redis nobody answers on: every cache call fails with a connection error.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port}/0",
        }
    }
    rates(user="3/min")
    throttling._fallback_cache.clear()  # counts of an earlier run in this minute
    client = _client(owner)
    statuses = [client.get("/api/v1/tasks").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert client.get("/api/v1/tasks")["X-RateLimit-Remaining"] == "0"
    assert "rate limits counted per process" in caplog.text


@pytest.mark.skipif(not getattr(django_settings, "CACHE_URL", ""), reason="set REDIS_URL or CACHE_URL")
def test_a_submit_counts_both_its_limits_in_one_round_trip_to_redis(
    rates: Any, settings: Any, client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis.connection

    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": django_settings.CACHE_URL}
    }
    from django.core.cache import cache

    cache.clear()  # a shared Redis may hold counters from an earlier run
    rates(user="100/min", task_create="2/min")
    sent: list[bytes] = []
    send = redis.connection.AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        if self.db == redis.connection.parse_url(django_settings.CACHE_URL).get("db", 0):
            sent.append(command)
        send(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    client.get("/api/v1/tasks")  # the connection's own handshake comes first
    statuses = []
    for _ in range(3):
        sent.clear()
        statuses.append(client.post("/api/v1/tasks", SUBMIT, format="json").status_code)
        assert len(sent) == 1, sent
    # Both limits were counted: the job-creation one refuses the third.
    assert statuses == [202, 202, 429]
