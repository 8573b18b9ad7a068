"""Production settings pass `check --deploy`; embedded defaults stay plain-http;
error bodies never carry a traceback; secrets never reach the logs."""

from __future__ import annotations

import logging
import os
import re
import secrets
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from gunicorn.glogging import SafeAtoms
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import api_token_create, api_token_revoke

ROOT = Path(__file__).resolve().parent.parent

# The production environment docs/fleet.md documents for the distributed configuration.
PRODUCTION_ENV = {
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "backserv.example.com",
    "BACKSERV_HTTPS": "1",
    "BEHIND_TLS_PROXY": "1",
    "DATABASE_URL": "postgres://backserv@db.internal:5432/backserv",
    "BROKER_URL": "redis://redis.internal:6379/0",
    "REDIS_URL": "redis://redis.internal:6379/1",
}


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "backserv_site.settings", "BACKSERV_VAR_DIR": str(ROOT / "var"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_production_configuration_passes_the_deploy_check() -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_deploy_check_catches_a_production_setup_without_https() -> None:
    env = {**PRODUCTION_ENV, "BACKSERV_HTTPS": "0"}
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W012" in result.stderr


def test_the_embedded_defaults_serve_plain_http_on_localhost() -> None:
    code = (
        "from django.conf import settings as s;"
        "print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS)"
    )
    result = _manage("shell", "--verbosity", "0", "-c", code, env={})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "False", "0"]


def test_the_health_probe_is_not_redirected_to_https() -> None:
    assert any(re.match(pattern, "health") for pattern in settings.SECURE_REDIRECT_EXEMPT)


@pytest.mark.django_db
@pytest.mark.urls("tests.probe_urls")
@pytest.mark.parametrize("path", ["/probe/crash", "/probe/plain-crash"])
def test_a_crash_answers_the_error_body_without_a_traceback(client: APIClient, path: str) -> None:
    client.raise_request_exception = False
    response = client.get(path)
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error.", "code": "internal_error"}
    for leak in ("Traceback", "boom", "RuntimeError", 'File "'):
        assert leak not in response.content.decode()


@pytest.mark.django_db
def test_unknown_routes_answer_the_error_body(client: APIClient) -> None:
    response = client.get("/api/v1/no-such-route")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


@pytest.mark.django_db
def test_token_secrets_never_reach_the_logs(caplog: pytest.LogCaptureFixture, owner: User) -> None:
    caplog.set_level(logging.DEBUG)
    issued = api_token_create(user=owner, name="logged?")
    good = APIClient()
    good.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    assert good.get("/api/v1/tasks").status_code == 200
    wrong_secret = issued.secret[:-4] + "AAAA"
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION=f"Bearer {wrong_secret}")
    assert bad.get("/api/v1/tasks").status_code == 401
    call_command("create_api_token", owner.username, stdout=StringIO(), stderr=StringIO())
    api_token_revoke(token=issued.token)
    assert good.get("/api/v1/tasks").status_code == 401

    logged = "\n".join(f"{record.getMessage()} {record.args}" for record in caplog.records)
    assert issued.token.prefix in logged  # the logs do speak of the token...
    for secret in (issued.secret, issued.secret[12:], wrong_secret[12:], settings.SECRET_KEY):
        assert secret not in logged  # ...never of its secret


def test_a_malformed_broker_url_is_refused_without_echoing_its_password() -> None:
    result = _manage("check", env={**PRODUCTION_ENV, "BROKER_URL": "kafka://user:hunter2@broker:9092"})
    assert result.returncode != 0
    assert "BROKER_URL must be" in result.stderr and "hunter2" not in result.stderr


def test_credentials_in_query_strings_stay_out_of_access_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    path = "/api/v1/tasks/3f1c/events?token=bs_3f9a0c1d_SeCrEt-value&last_event_id=4"
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", path, "1.1", 200)
    download = "/media/outputs/3f1c/1-0.png?expires=1800000000&signature=SiGnAtUrE"
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", download, "1.1", 200)

    logged = caplog.text
    assert "SeCrEt-value" not in logged and "SiGnAtUrE" not in logged
    assert "token=[redacted]&last_event_id=4" in logged and "expires=1800000000" in logged


def test_gunicorns_access_atoms_are_redacted_too(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gunicorn.access")
    request_line = "GET /api/v1/tasks?token=bs_3f9a0c1d_SeCrEt-value HTTP/1.1"
    atoms = SafeAtoms({"h": "127.0.0.1", "r": request_line, "s": "401", "q": "token=bs_3f9a0c1d_SeCrEt-value"})
    # gunicorn's own call: one mapping of atoms, looked up by its format.
    logging.getLogger("gunicorn.access").info('%(h)s "%(r)s" %(s)s %(q)s %(b)s', atoms)

    assert "SeCrEt-value" not in caplog.text
    assert '"GET /api/v1/tasks?token=[redacted] HTTP/1.1" 401 token=[redacted] -' in caplog.text
