"""Back.Serv settings, read from the environment.

Embedded mode (nothing set): SQLite under var/, an in-process broker, a secret key kept
in var/secret_key. Distributed mode: DATABASE_URL and BROKER_URL point at shared
services, and SECRET_KEY must be given.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from corsheaders.defaults import default_headers
from django.core.exceptions import ImproperlyConfigured

from backserv_site.env import (
    env_auto_bool,
    env_auto_int,
    env_bool,
    env_float,
    env_int,
    env_json_object,
    env_list,
    env_rate,
    env_seconds_by_type,
    env_secret,
    env_str,
    local_secret_key,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("BACKSERV_VAR_DIR", str(BASE_DIR / "var")))
VERSION = "0.1.0"

BROKER_URL = env_str("BROKER_URL")
DISTRIBUTED = bool(BROKER_URL)

SECRET_KEY = env_secret("SECRET_KEY")
if not SECRET_KEY:
    if DISTRIBUTED:
        raise ImproperlyConfigured(
            "SECRET_KEY (or SECRET_KEY_FILE) is required when BROKER_URL is set: "
            "every process of a fleet must share it."
        )
    SECRET_KEY = local_secret_key(VAR_DIR / "secret_key")
# Rotation: the old key moves here while the new one is SECRET_KEY. Admin sessions still
# open, and API tokens and server keys still match (each is re-hashed under the new key
# at its first use), until the old key is dropped.
SECRET_KEY_FALLBACKS = [key.strip() for key in env_secret("SECRET_KEY_FALLBACKS").split(",") if key.strip()]

DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "corsheaders",
    "django_dramatiq",
    "accounts",
    "tasks",
    "generation",
    "servers",
    # The API documents (tasks/compat) that add to the core: the task manager 002's and
    # Back.Serv 000's names at /api/v1/tasks (read in this order), the studio 003's tables.
    "tasks.compat.taskmanager",
    "tasks.compat.backserv",
    "tasks.compat.studio",
    # The composition root: `serve` (the API with workers in one process), reset_metrics.
    "backserv_site",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Before any middleware that may answer by itself (an HTTPS redirect, a static file),
    # so those answers carry the CORS headers too.
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Sync only and innermost: it keeps the whole stack on one thread under ASGI.
    "accounts.throttling.rate_limit_headers_middleware",
]

ROOT_URLCONF = "backserv_site.urls"
WSGI_APPLICATION = "backserv_site.wsgi.application"
ASGI_APPLICATION = "backserv_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database -------------------------------------------------------------------------

_SQLITE_OPTIONS = {
    # IMMEDIATE: a write transaction takes the lock when it begins, so two threads never
    # deadlock upgrading read locks; WAL lets readers go on while one thread writes.
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
DATABASE_URL = env_str("DATABASE_URL")
# Postgres connections come from a pool per process (psycopg_pool, through Django's
# "pool" option). Under ASGI each request runs on a thread of its own, so without a
# pool every request opened a connection and planned its queries on cold catalog
# caches: a few milliseconds per request. 0 turns the pool off.
DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 10)
DATABASE_POOL_TIMEOUT = env_float("DATABASE_POOL_TIMEOUT", 10.0)
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0), conn_health_checks=True
        )
    }
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DATABASE_POOL_SIZE > 0:
        if DATABASES["default"]["CONN_MAX_AGE"]:
            raise ImproperlyConfigured(
                "DATABASE_CONN_MAX_AGE keeps connections without a pool: set DATABASE_POOL_SIZE=0 with it"
            )
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            # With CONN_HEALTH_CHECKS on, the pool checks a connection as it hands it
            # out, so one broken by a database restart is replaced, not used.
            "min_size": 1,
            "max_size": DATABASE_POOL_SIZE,
            # Waited in short turns (see backserv_site.db.postgresql), up to
            # DATABASE_POOL_TIMEOUT in all.
            "timeout": min(DATABASE_POOL_TIMEOUT, 0.5),
        }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "backserv.sqlite3",
            "OPTIONS": _SQLITE_OPTIONS,
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite creates the file but not its folder (a fresh clone has no var/).
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {**_SQLITE_OPTIONS, **DATABASES["default"].get("OPTIONS", {})}
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
# django-prometheus' wrappers of the same backends count queries, errors and latency.
_INSTRUMENTED_ENGINES = {
    "django.db.backends.sqlite3": "django_prometheus.db.backends.sqlite3",
    # Ours wraps django-prometheus' to fail fast from the pool when Postgres is down.
    "django.db.backends.postgresql": "backserv_site.db.postgresql",
}
DATABASES["default"]["ENGINE"] = _INSTRUMENTED_ENGINES.get(
    DATABASES["default"]["ENGINE"], DATABASES["default"]["ENGINE"]
)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Files ----------------------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = env_str("MEDIA_URL", "/media/")
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
# Where outputs and uploads are stored: files under MEDIA_ROOT by default, or any Django
# storage class, e.g. django-storages' S3 ("storages.backends.s3.S3Storage", options
# {"bucket_name": ..., "querystring_expire": 3600}), whose own presigned URLs then
# replace this site's signed ones.
STORAGES = {
    "default": {
        "BACKEND": env_str("STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"),
        "OPTIONS": env_json_object("STORAGE_OPTIONS"),
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Job outputs and uploads are served by backserv_site.media only under a signed URL
# that the owner's API responses carry; it stops working after this many seconds.
MEDIA_URL_MAX_AGE_SECONDS = env_int("MEDIA_URL_MAX_AGE_SECONDS", 3600)
# Files users download: absolute URLs in job results use this base when set (a CDN or
# the public host name); otherwise the host of the request that reads the job.
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL").rstrip("/")

# REST framework -------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Authenticated, and the token carries the scope the method (or a staff-only view) needs.
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.HasScope"],
    "DEFAULT_THROTTLE_CLASSES": [
        "accounts.throttling.RateLimitThrottle",
    ],
    # Per user (whichever token); "" turns a limit off. Counted in the cache below.
    "DEFAULT_THROTTLE_RATES": {
        "user": env_rate("RATE_LIMIT_DEFAULT", "100/min"),
        "task_create": env_rate("RATE_LIMIT_TASK_CREATE", "50/min"),
        "server_registration": env_rate("RATE_LIMIT_SERVER_REGISTRATION", "10/min"),
    },
    "DEFAULT_PAGINATION_CLASS": "backserv_site.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "backserv_site.error_bodies.exception_handler",
    # JSON bodies nested past backserv_site.parsers.MAX_JSON_DEPTH are a 400.
    "DEFAULT_PARSER_CLASSES": [
        "backserv_site.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # Tags each operation by its path (backserv_site.openapi).
    "DEFAULT_SCHEMA_CLASS": "backserv_site.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Back.Serv API",
    "DESCRIPTION": (
        "Submit GPU generation jobs, follow them (sync waits, Server-Sent Events, WebSockets, "
        "signed webhooks) and fetch their results. Authenticate with `Authorization: Bearer <token>`. "
        "Every error has one body: `{detail, code, fields}`."
    ),
    "VERSION": VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and ReDoc assets come from drf-spectacular-sidecar: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The distributed-system document's routes have their own description (/openapi.json).
    "PREPROCESSING_HOOKS": ["tasks.compat.distributed.schema.exclude_from_backserv_schema"],
    # The enums' hook is drf-spectacular's default; ours lists the tags with their lines.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "backserv_site.openapi.describe_tags"],
    # Request bodies are documented as JSON, what clients are told to send; the parsers
    # still take form posts. Uploads name multipart themselves.
    "PARSER_WHITELIST": ["rest_framework.parsers.JSONParser"],
    "ENUM_NAME_OVERRIDES": {
        "TaskStateEnum": "tasks.models.TaskState",
        "WebhookEventEnum": "tasks.models.WebhookEvent",
        "WebhookDeliveryStateEnum": "tasks.models.WebhookDelivery.State",
        "ReportedStateEnum": "servers.remote.REPORTED_STATES",
    },
}

# JWT bearer tokens (HS256) of the distributed-system document (shared/seeds/004): they
# open only its routes (/api/task, /api/servers, /api/stats). Unset: JWTs are refused;
# there is no default, since a known key would let anyone mint an admin token.
JWT_SECRET = env_secret("JWT_SECRET")
if JWT_SECRET and len(JWT_SECRET.encode()) < 32:
    # RFC 7518 3.2: an HS256 key must be at least as long as the hash (32 bytes).
    raise ImproperlyConfigured("JWT_SECRET must be at least 32 bytes long (HS256 keys shorter than that are weak).")

# Cache (rate-limit counters) -------------------------------------------------------

# Redis when given, so limits hold across processes and machines; local memory in
# embedded mode, where one process serves everything.
CACHE_URL = env_str("CACHE_URL") or env_str("REDIS_URL")
if CACHE_URL:
    if not CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
        # Not echoed: the URL may hold a password.
        raise ImproperlyConfigured("CACHE_URL/REDIS_URL must be a redis://, rediss:// or unix:// URL.")
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "backserv"}}

# Dramatiq -------------------------------------------------------------------------

# One message a worker thread at a time on GPU queues: prefetching more would let one
# worker hoard jobs that an idle GPU elsewhere could start now.
os.environ.setdefault("dramatiq_queue_prefetch", "1")

_DRAMATIQ_MIDDLEWARE = [
    "dramatiq.middleware.AgeLimit",
    "dramatiq.middleware.TimeLimit",
    "dramatiq.middleware.Callbacks",
    "dramatiq.middleware.Retries",
    "dramatiq.middleware.CurrentMessage",
    "django_dramatiq.middleware.DbConnectionsMiddleware",
    "tasks.middleware.WorkerConnectionsMiddleware",
    "tasks.middleware.SweeperMiddleware",
    "generation.middleware.ModelPreloadMiddleware",
    "servers.middleware.ServerPresenceMiddleware",
]


def dramatiq_broker_settings(url: str) -> dict:
    """DRAMATIQ_BROKER for a broker URL; always set explicitly (see FACTS: 0.15.0's
    defaults name a middleware that dramatiq 2.x removed)."""
    if url.startswith(("redis://", "rediss://")):
        broker, options = "tasks.brokers.PromptRedisBroker", {"url": url}
    elif url.startswith(("amqp://", "amqps://")):
        broker, options = "dramatiq.brokers.rabbitmq.RabbitmqBroker", {"url": url}
    elif url == "":
        broker, options = "dramatiq.brokers.stub.StubBroker", {}
    else:
        # Only the scheme is echoed: the URL may hold a password.
        scheme = url.partition(":")[0]
        raise ImproperlyConfigured(f"BROKER_URL must be a redis://, rediss://, amqp:// or amqps:// URL, got {scheme}:")
    return {"BROKER": broker, "OPTIONS": options, "MIDDLEWARE": _DRAMATIQ_MIDDLEWARE}


DRAMATIQ_BROKER = dramatiq_broker_settings(BROKER_URL)
DRAMATIQ_AUTODISCOVER_MODULES = ["actors"]

# Jobs -----------------------------------------------------------------------------

BACKSERV = {
    # The Dramatiq queue every local worker consumes.
    "QUEUE_NAME": env_str("BACKSERV_QUEUE", "gpu"),
    # A claimed job's lease; the worker renews it every third of this while it runs.
    "LEASE_SECONDS": env_int("BACKSERV_LEASE_SECONDS", 30),
    # Attempts (first run plus automatic retries of retryable failures) before a job
    # fails for good; a request may give its own `max_attempts` (1-10).
    "MAX_ATTEMPTS": env_int("BACKSERV_MAX_ATTEMPTS", 3),
    # A PENDING job nobody claimed for this long gets its message sent again.
    "REDISPATCH_AFTER_SECONDS": env_int("BACKSERV_REDISPATCH_AFTER_SECONDS", 60),
    "SWEEP_INTERVAL_SECONDS": env_float("BACKSERV_SWEEP_INTERVAL_SECONDS", 10.0),
    # Progress is written at most this often (seconds) while a job runs.
    "PROGRESS_INTERVAL_SECONDS": env_float("BACKSERV_PROGRESS_INTERVAL_SECONDS", 0.5),
    # A running job's cancel flag and claim are read after a step at most this often:
    # every step of a real model, every few of a tiny one.
    "CANCEL_CHECK_INTERVAL_SECONDS": env_float("BACKSERV_CANCEL_CHECK_INTERVAL_SECONDS", 0.05),
    "WORKER_THREADS": env_int("BACKSERV_WORKER_THREADS", 2),
    # Worker threads live as long as their process, so each keeps its database
    # connection this long instead of opening one per message.
    "WORKER_CONN_MAX_AGE": env_int("BACKSERV_WORKER_CONN_MAX_AGE", 300),
    # After a job a worker thread claims its queue's next waiting one itself, without
    # waiting for that job's message, for up to this long before it takes a new message.
    "WORKER_SPELL_SECONDS": env_float("BACKSERV_WORKER_SPELL_SECONDS", 30.0),
    # A job not started within this many seconds of being queued becomes TIMEOUT (a
    # request may give its own `queue_timeout`). The task-manager document's 30 s suits
    # a large fleet; a few GPUs with minute-long jobs need longer queues, hence 10 min.
    "QUEUE_TIMEOUT_SECONDS": env_seconds_by_type("BACKSERV_QUEUE_TIMEOUTS", {"default": 600}),
    # A running job past this many seconds becomes TIMEOUT at its next pipeline step.
    "RUN_TIME_LIMIT_SECONDS": env_seconds_by_type("BACKSERV_RUN_TIME_LIMITS", {"default": 1800, "image_creation": 600}),
    # Automatic retries of retryable failures wait BASE * 2^(attempt-1) seconds, capped,
    # less up to half of it at random (jitter) so a burst of failures does not return
    # as a burst.
    "RETRY_BACKOFF_SECONDS": env_float("BACKSERV_RETRY_BACKOFF_SECONDS", 5.0),
    "RETRY_BACKOFF_MAX_SECONDS": env_float("BACKSERV_RETRY_BACKOFF_MAX_SECONDS", 300.0),
    "NODE_NAME": env_str("BACKSERV_NODE_NAME", ""),
    # Outbound URLs (webhooks, inputs) may reach private and loopback addresses only when
    # this is on, or inside ALLOWED_NETWORKS: a job must not make the server probe its
    # own network.
    "ALLOW_PRIVATE_URLS": env_bool("BACKSERV_ALLOW_PRIVATE_URLS", False),
    # Networks (CIDR) that outbound URLs may reach although they are not public, e.g. an
    # internal image store. INPUT_ALLOWED_NETWORKS is its older name, still read.
    "ALLOWED_NETWORKS": env_list("OUTBOUND_ALLOWED_NETWORKS", env_list("INPUT_ALLOWED_NETWORKS", [])),
    # Sync submits (`"sync": true` or `Prefer: wait=N`): the default and the most seconds.
    "WAIT_DEFAULT_SECONDS": env_int("BACKSERV_WAIT_DEFAULT_SECONDS", 60),
    "WAIT_MAX_SECONDS": env_int("BACKSERV_WAIT_MAX_SECONDS", 300),
    # Where "job changed" notices travel between processes (Redis pub/sub). Without it
    # they stay in-process; waiters also re-read the database this often, so a lost
    # notice only delays.
    "NOTIFY_URL": env_str("REDIS_URL", BROKER_URL if BROKER_URL.startswith(("redis://", "rediss://")) else ""),
    "NOTIFY_CHANNEL": env_str("BACKSERV_NOTIFY_CHANNEL", "backserv:task-changed"),
    "NOTIFY_POLL_SECONDS": env_float("BACKSERV_NOTIFY_POLL_SECONDS", 5.0),
    "IDEMPOTENCY_WINDOW_SECONDS": env_int("BACKSERV_IDEMPOTENCY_WINDOW_SECONDS", 24 * 3600),
    "BATCH_MAX_TASKS": env_int("BACKSERV_BATCH_MAX_TASKS", 100),
    # Webhook retries: exponential from the first delay up to the cap, for the window.
    "WEBHOOK_QUEUE": env_str("BACKSERV_WEBHOOK_QUEUE", "webhooks"),
    "WEBHOOK_TIMEOUT_SECONDS": env_float("BACKSERV_WEBHOOK_TIMEOUT_SECONDS", 10.0),
    "WEBHOOK_FIRST_RETRY_SECONDS": env_float("BACKSERV_WEBHOOK_FIRST_RETRY_SECONDS", 5.0),
    "WEBHOOK_MAX_RETRY_SECONDS": env_float("BACKSERV_WEBHOOK_MAX_RETRY_SECONDS", 1800.0),
    "WEBHOOK_RETRY_WINDOW_SECONDS": env_float("BACKSERV_WEBHOOK_RETRY_WINDOW_SECONDS", 3 * 3600.0),
    # Back.Serv's /cancel_task waits this long for a running job to stop, so it can
    # answer "Cancelled" rather than "cancellation requested".
    "CANCEL_WAIT_SECONDS": env_float("BACKSERV_CANCEL_WAIT_SECONDS", 5.0),
    # The studio's generate routes answer when the job is done: at most this long.
    "STUDIO_SYNC_TIMEOUT": env_float("STUDIO_SYNC_TIMEOUT", 120.0),
    # Unfinished (PENDING..STARTED) jobs one user may have at once; a user's own
    # max_unfinished_tasks (admin) wins. 0: no limit.
    "MAX_UNFINISHED_TASKS": env_int("BACKSERV_MAX_UNFINISHED_TASKS", 100),
    # The sweep deletes the output files of jobs finished longer ago than this (the job
    # stays, `result_expired`), and with TASK_RETENTION_DAYS the jobs themselves, a
    # bounded batch a sweep. 0 keeps them forever.
    "RESULT_RETENTION_DAYS": env_float("RESULT_RETENTION_DAYS", 7.0),
    "TASK_RETENTION_DAYS": env_float("TASK_RETENTION_DAYS", 0.0),
}
for _name in ("RESULT_RETENTION_DAYS", "TASK_RETENTION_DAYS"):
    if BACKSERV[_name] < 0:
        raise ImproperlyConfigured(f"{_name} must be 0 (keep forever) or a number of days, got {BACKSERV[_name]}")

SERVERS = {
    # Worker processes register themselves as servers and consume their own queue.
    # Off in embedded mode: its worker threads take every job from the shared queue.
    "REGISTER_WORKERS": env_bool("BACKSERV_REGISTER_WORKERS", DISTRIBUTED),
    # Batches per worker thread routed to a registered worker beyond those it runs: its
    # next batch is already in its queue when one ends (as Celery's prefetch). 0: a job
    # is routed to a worker only once it has a free slot.
    "WORKER_BACKLOG": env_int("BACKSERV_WORKER_BACKLOG", 1),
    "HEARTBEAT_INTERVAL_SECONDS": env_float("BACKSERV_HEARTBEAT_INTERVAL_SECONDS", 10.0),
    # A server silent for this many intervals is offline; its jobs go elsewhere.
    "HEARTBEAT_MISSES": env_int("BACKSERV_HEARTBEAT_MISSES", 3),
    # A worker's server offline this long, with no unfinished job, is removed by the
    # sweep with its queue (a departed host's row and stale messages). 0: kept forever.
    "OFFLINE_RETENTION_HOURS": env_float("BACKSERV_OFFLINE_SERVER_RETENTION_HOURS", 168.0),
    # Remote GPU servers: where they report back (this API's public base URL), and how
    # jobs are POSTed to them.
    "CALLBACK_BASE_URL": env_str("BACKSERV_CALLBACK_BASE_URL", PUBLIC_BASE_URL or "http://127.0.0.1:8000"),
    "REMOTE_TIMEOUT_SECONDS": env_float("BACKSERV_REMOTE_TIMEOUT_SECONDS", 10.0),
    # Health checks of remote servers run side by side, each given at most this long:
    # one that hangs must not hold the sweep.
    "HEALTH_TIMEOUT_SECONDS": env_float("BACKSERV_HEALTH_TIMEOUT_SECONDS", 2.0),
    "REMOTE_RETRIES": env_int("BACKSERV_REMOTE_RETRIES", 3),
    "REMOTE_RETRY_BACKOFF_SECONDS": env_float("BACKSERV_REMOTE_RETRY_BACKOFF_SECONDS", 1.0),
}

_MODELS_DIR = Path(env_str("MODELS_DIR", str(VAR_DIR / "models")))


# Model folder per task type (upscale: per factor), each overridable by MODEL_<KEY>. The
# defaults are the tiny demo models make_demo_models builds under MODELS_DIR. An empty
# upscale folder leaves only the lanczos method for that factor.
DEMO_MODEL_FOLDERS = {
    "image_creation": "tiny-sd",
    "image_to_image": "tiny-sd",
    "image_upscale_x2": "tiny-sd-upscale-x2",
    "image_upscale_x4": "tiny-sd-upscale-x4",
    "video_creation": "tiny-animatediff",
}

GENERATION = {
    # Where make_demo_models builds the tiny demo models.
    "MODELS_DIR": _MODELS_DIR,
    "MODELS": {
        key: env_str(f"MODEL_{key.upper()}", str(_MODELS_DIR / folder)) for key, folder in DEMO_MODEL_FOLDERS.items()
    },
    "DEVICE": env_str("GENERATION_DEVICE", ""),
    # Threads torch computes with on the CPU; 0: one fewer than the process's cores (at
    # least one), leaving a core to the API and the database (see
    # generation.models_cache.cpu_threads). OMP_NUM_THREADS, when set, wins over 0.
    "CPU_THREADS": env_int("GENERATION_CPU_THREADS", 0),
    "PIPELINE_CACHE_SIZE": env_int("PIPELINE_CACHE_SIZE", 2),
    # Compatible waiting jobs (same type, model, size, steps) a worker runs as one
    # pipeline call; 1 turns dynamic batching off. None ("auto", the default): 4 on the
    # CPU; on a GPU as many as its free memory holds at the largest allowed size, at
    # most 16, decided once per worker process (generation.acceleration).
    "DYNAMIC_BATCH_SIZE": env_auto_int("DYNAMIC_BATCH_SIZE"),
    # Load models when a worker starts, so the first job does not wait for the load.
    "PRELOAD_MODELS": env_bool("PRELOAD_MODELS", True),
    # GPU speed-ups, never used on the CPU (generation.acceleration). CUDA_GRAPHS: the
    # UNet's forward replayed from a CUDA graph per input shape (on by default).
    # CHANNELS_LAST: the UNet and VAE in channels-last memory; None ("auto"): only when
    # the worker runs one job a call (on an H200 +10% at batch 1, -10% at batch 16).
    # TORCH_COMPILE: the UNet compiled by torch.compile under its graphs (+34% at batch
    # 16 on an H200, but ~1 minute of compiling per batch size at each start: off by
    # default). WARM_UP: a preloaded model's graphs captured at the default size for
    # each batch size, so the first job pays no capture.
    "CUDA_GRAPHS": env_bool("GENERATION_CUDA_GRAPHS", True),
    "CHANNELS_LAST": env_auto_bool("GENERATION_CHANNELS_LAST"),
    "TORCH_COMPILE": env_bool("GENERATION_TORCH_COMPILE", False),
    "WARM_UP": env_bool("GENERATION_WARM_UP", True),
    # A pipeline call's after-work (PNG/MP4 encoding, storage, recording the outcome) on
    # a second stage that runs while the next call computes. None ("auto"): on a GPU.
    "OVERLAP_FINISHING": env_auto_bool("GENERATION_OVERLAP_FINISHING"),
    # `manage.py serve` runs its GPU worker threads in a child process, so the thread
    # that launches kernels shares no interpreter with the web server's Python. None
    # ("auto"): when an NVIDIA GPU is present (GENERATION_DEVICE cuda, or /dev/nvidiactl).
    "WORKER_PROCESS": env_auto_bool("GENERATION_WORKER_PROCESS"),
    "MAX_WIDTH": env_int("GENERATION_MAX_WIDTH", 1024),
    "MAX_HEIGHT": env_int("GENERATION_MAX_HEIGHT", 1024),
    "MAX_STEPS": env_int("GENERATION_MAX_STEPS", 100),
    "MAX_PROMPT_LENGTH": env_int("GENERATION_MAX_PROMPT_LENGTH", 2000),
    "DEFAULT_STEPS": env_int("GENERATION_DEFAULT_STEPS", 25),
    "DEFAULT_SIZE": env_int("GENERATION_DEFAULT_SIZE", 512),
    # Video: frames = duration x fps; motion adapters attend over 32 frames at most.
    "MAX_FRAMES": env_int("GENERATION_MAX_FRAMES", 32),
    "MAX_FPS": env_int("GENERATION_MAX_FPS", 30),
    "DEFAULT_VIDEO_SIZE": env_int("GENERATION_DEFAULT_VIDEO_SIZE", 256),
    # Upscale: the largest output, in pixels (the input size is known only once fetched).
    "MAX_UPSCALE_OUTPUT_PIXELS": env_int("GENERATION_MAX_UPSCALE_OUTPUT_PIXELS", 4096 * 4096),
    # Input images (URLs, uploads, data URIs, earlier outputs).
    "INPUT_MAX_BYTES": env_int("INPUT_MAX_BYTES", 20 * 1024 * 1024),
    # Checked from the header before decoding: a small file can claim a huge canvas.
    "INPUT_MAX_PIXELS": env_int("INPUT_MAX_PIXELS", 4096 * 4096),
    "INPUT_FETCH_TIMEOUT_SECONDS": env_float("INPUT_FETCH_TIMEOUT_SECONDS", 15.0),
    "INPUT_MAX_REDIRECTS": env_int("INPUT_MAX_REDIRECTS", 3),
    # A job's `output_url` (upscale): the PUT of its result, tried 3 times on connection
    # errors and 5xx, waiting RETRY x attempt seconds between tries.
    "OUTPUT_UPLOAD_TIMEOUT_SECONDS": env_float("OUTPUT_UPLOAD_TIMEOUT_SECONDS", 60.0),
    "OUTPUT_UPLOAD_RETRY_SECONDS": env_float("OUTPUT_UPLOAD_RETRY_SECONDS", 1.0),
}

# No code path may fetch weights from a hub at run time; models are local directories.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

# Metrics --------------------------------------------------------------------------

# /metrics answers loopback callers (see METRICS_ALLOW_LOOPBACK below), staff API
# tokens, and `Authorization: Bearer <this>` when set (for a Prometheus server on
# another host). Multiprocess mode is prometheus_client's own PROMETHEUS_MULTIPROC_DIR
# variable.
METRICS_BEARER_TOKEN = env_secret("METRICS_BEARER_TOKEN")
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR")

# Logging --------------------------------------------------------------------------

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
# "keyvalue": a text line with the event's fields as key=value; "json": one JSON object
# a line, for log shippers.
LOG_FORMAT = env_str("LOG_FORMAT", "keyvalue")
if LOG_FORMAT not in ("keyvalue", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be keyvalue or json, got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "keyvalue": {"()": "backserv_site.logs.KeyValueFormatter"},
        "json": {"()": "backserv_site.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "httpx": {"level": "WARNING"},
        "pika": {"level": "WARNING"},
    },
}

# Security -------------------------------------------------------------------------

# BACKSERV_HTTPS=1: the site is reached over HTTPS (directly or through a TLS proxy);
# it turns on every secure default below, each still overridable. Off by default so
# the embedded server works over plain http on 127.0.0.1.
HTTPS = env_bool("BACKSERV_HTTPS", False)
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", HTTPS)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HTTPS)
# Load balancers and scrapers probe these over plain http inside the network.
SECURE_REDIRECT_EXEMPT = [r"^health(/live|/ready)?$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", HTTPS)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", False) else None
# A reverse proxy on the same host makes every client's address loopback, so loopback
# alone opens /metrics only where no proxy is declared.
METRICS_ALLOW_LOOPBACK = env_bool("METRICS_ALLOW_LOOPBACK", SECURE_PROXY_SSL_HEADER is None)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Cross-origin requests (django-cors-headers): off unless origins are named, e.g.
# "https://app.example.com". Browsers then may call the API from those origins with a
# token (no cookies: the admin's session stays same-origin), send the headers our
# routes read, and read the headers they answer with.
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", [])
CORS_ALLOW_HEADERS = (*default_headers, "idempotency-key", "prefer", "last-event-id")
CORS_EXPOSE_HEADERS = [
    "Retry-After",
    "Location",
    "Idempotent-Replayed",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
]
