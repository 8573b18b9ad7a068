"""Test settings: the real settings, with the in-process stub broker for the in-process
worker. BROKER_URL (Redis or RabbitMQ, when set) is kept for the end-to-end tests, which
start real server and worker processes."""

from __future__ import annotations

import os

os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-not-for-production-0123456789")

from backserv_site.settings import *  # noqa: F403
from backserv_site.settings import (
    BACKSERV,
    DEMO_MODEL_FOLDERS,
    GENERATION,
    SERVERS,
    VAR_DIR,
    dramatiq_broker_settings,
)

E2E_BROKER_URL = BROKER_URL  # noqa: F405
DRAMATIQ_BROKER = dramatiq_broker_settings("")
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = VAR_DIR / "test-media"
TEST_MODELS_DIR = VAR_DIR / "test-models"
GENERATION = {
    **GENERATION,
    "MODELS_DIR": TEST_MODELS_DIR,
    "MODELS": {key: str(TEST_MODELS_DIR / folder) for key, folder in DEMO_MODEL_FOLDERS.items()},
    "OUTPUT_UPLOAD_RETRY_SECONDS": 0.01,
    # Every demo model stays loaded through a run: a load settles the heap (a full
    # collection, see generation.models_cache), 0.4 s in a process with torch loaded,
    # and with two the suite loaded models 53 times.
    "PIPELINE_CACHE_SIZE": 8,
}
BACKSERV = {
    **BACKSERV,
    "PROGRESS_INTERVAL_SECONDS": 0.0,
    "CANCEL_CHECK_INTERVAL_SECONDS": 0.0,
    # Tests stay in one process: "job changed" notices go through the in-process hub.
    "NOTIFY_URL": "",
    "WEBHOOK_FIRST_RETRY_SECONDS": 0.05,
    "WEBHOOK_MAX_RETRY_SECONDS": 0.2,
    "WEBHOOK_TIMEOUT_SECONDS": 2.0,
    # Limits high enough for tests that submit in bulk; the limit tests set their own.
    "MAX_UNFINISHED_TASKS": 10_000,
}
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {"user": "10000/min", "task_create": "10000/min", "server_registration": "10000/min"},
}
STATIC_ROOT = BASE_DIR / "static"  # noqa: F405  (exists; silences WhiteNoise in tests)
# In-process workers are not servers unless a test registers them; remote servers in
# tests answer at once, so retries need no backoff.
SERVERS = {**SERVERS, "REGISTER_WORKERS": False, "REMOTE_RETRY_BACKOFF_SECONDS": 0.01}

# Rate-limit counters must not leak between tests through a shared Redis; the test of
# the Redis cache itself uses CACHE_URL explicitly.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tests"}}

# No database pool in this process: a test's threads (and a TestCase's transaction)
# hold their connection for the test's life, which would drain it. The end-to-end
# tests' servers and workers run the production settings, pool included.
DATABASES["default"].get("OPTIONS", {}).pop("pool", None)  # noqa: F405
