"""GET /metrics: the exposition parses, carries request, database and job metrics,
and is open only to loopback callers no proxy forwarded, staff tokens and the configured
bearer secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from accounts.models import User
from backserv_site.metrics import metrics_multiprocess_dir_reset
from tasks import services
from tasks.models import Task

REMOTE = {"REMOTE_ADDR": "203.0.113.9"}
ROOT = Path(__file__).resolve().parent.parent.parent


def _samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_the_exposition_parses_and_counts_jobs(owner: User) -> None:
    before = _samples(Client().get("/metrics").content)
    task = services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "x"})
    services.task_claim(task_id=task.pk, worker="w1")
    running = Task.objects.get(pk=task.pk)
    services.task_start(task=running)
    services.task_succeed(task=running, result={})
    services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "y"})

    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    after = _samples(response.content)
    completed = ("tasks_completed_total", {"task_type": "image_creation", "status": "SUCCESS"})
    assert _value(after, completed[0], **completed[1]) - _value(before, completed[0], **completed[1]) == 1
    duration = _value(after, "task_duration_seconds_count", task_type="image_creation")
    assert duration - _value(before, "task_duration_seconds_count", task_type="image_creation") == 1
    wait = _value(after, "task_queue_wait_seconds_count", task_type="image_creation")
    assert wait - _value(before, "task_queue_wait_seconds_count", task_type="image_creation") == 1
    assert _value(after, "tasks_queued", task_type="image_creation") == 1
    # django-prometheus: request and database metrics are there too.
    names = {name for name, _ in after}
    assert any(name.startswith("django_http_requests_total") for name in names)
    assert any(name.startswith("django_db_execute_total") for name in names)


@pytest.mark.django_db(transaction=True)
def test_submits_are_counted_once_committed(client: APIClient, submit: Any) -> None:
    name, labels = "tasks_submitted_total", {"task_type": "image_creation"}
    before = _value(_samples(Client().get("/metrics").content), name, **labels)
    submit()
    assert _value(_samples(Client().get("/metrics").content), name, **labels) - before == 1


def test_it_refuses_callers_from_elsewhere_without_credentials(db: None) -> None:
    response = Client().get("/metrics", **REMOTE)
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


def test_it_refuses_a_non_staff_token_from_elsewhere(client: APIClient) -> None:
    assert client.get("/metrics", **REMOTE).status_code == 403


def test_it_refuses_a_bad_token_from_elsewhere(anonymous_client: APIClient) -> None:
    anonymous_client.credentials(HTTP_AUTHORIZATION="Bearer bs_not-a-token")
    assert anonymous_client.get("/metrics", **REMOTE).status_code == 403


def test_a_staff_token_opens_it_from_elsewhere(staff_client: APIClient) -> None:
    assert staff_client.get("/metrics", **REMOTE).status_code == 200


def test_the_configured_bearer_secret_opens_it_from_elsewhere(db: None, settings: Any) -> None:
    settings.METRICS_BEARER_TOKEN = "scrape-secret-123"
    ok = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret-123", **REMOTE)
    assert ok.status_code == 200
    wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret-124", **REMOTE)
    assert wrong.status_code == 403


def test_behind_a_tls_proxy_loopback_alone_is_refused(staff_client: APIClient) -> None:
    # What a reverse proxy on the same host hands on: its own loopback address.
    proxied = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9", "HTTP_X_FORWARDED_PROTO": "https"}
    with override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"), METRICS_ALLOW_LOOPBACK=False):
        refused = Client().get("/metrics", **proxied)
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
        assert Client().get("/metrics").status_code == 403  # nor a scraper on the host
        assert staff_client.get("/metrics", **proxied).status_code == 200


def test_a_forwarded_request_is_not_loopback_even_with_no_proxy_declared(db: None, settings: Any) -> None:
    settings.METRICS_BEARER_TOKEN = "scrape-secret-123"
    for header in ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP"):
        assert Client().get("/metrics", **{header: "203.0.113.9"}).status_code == 403
    scraper = {"HTTP_X_FORWARDED_FOR": "203.0.113.9", "HTTP_AUTHORIZATION": "Bearer scrape-secret-123"}
    assert Client().get("/metrics", **scraper).status_code == 200


def test_loopback_trust_follows_the_proxy_setting_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    def loaded(**env: str) -> bool:
        for name in ("BEHIND_TLS_PROXY", "METRICS_ALLOW_LOOPBACK"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        code = "import backserv_site.settings as s; print(s.METRICS_ALLOW_LOOPBACK)"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
        return result.stdout.strip() == "True"

    assert loaded() is True
    assert loaded(BEHIND_TLS_PROXY="1") is False
    assert loaded(BEHIND_TLS_PROXY="1", METRICS_ALLOW_LOOPBACK="1") is True
    assert loaded(METRICS_ALLOW_LOOPBACK="0") is False


_CHILD = """
import django
django.setup()
from tasks import metrics
metrics.tasks_submitted.labels("image_creation").inc({count})
"""


def test_in_multiprocess_mode_one_scrape_sums_every_process(
    db: None, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    (directory / "counter_999999.db").write_bytes(b"left by a previous run")
    settings.PROMETHEUS_MULTIPROC_DIR = str(directory)
    metrics_multiprocess_dir_reset()
    assert list(directory.iterdir()) == []

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "DJANGO_SETTINGS_MODULE": "tests.settings"}
    for count in (2, 5):  # two worker processes
        subprocess.run([sys.executable, "-c", _CHILD.format(count=count)], env=env, check=True, cwd=settings.BASE_DIR)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    samples = _samples(Client().get("/metrics").content)
    assert _value(samples, "tasks_submitted_total", task_type="image_creation") == 7
