"""Django settings for Delivery Sentinel.

Zero-config for local development: with no environment at all this runs against SQLite in the
project root, Redis on 127.0.0.1:6379 and the three-node local Kafka cluster. Everything else
comes from environment variables read through the typed helpers in ``workers.engine.env``; a
malformed value stops the process at import with an error naming the variable. Secrets also
accept ``NAME_FILE`` (path to a file holding the value).
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url

from workers.engine.env import (
    EnvError,
    envbool,
    envchoice,
    envint,
    envlist,
    envnetworks,
    envredisurl,
    envsecret,
    envstr,
    mask_url,
    redis_tls_options,
)
from workers.localkafka.address import bootstrap_servers, local_address
from workers.runtime.publish import channel_layer_config

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Core -------------------------------------------------------------------------------------

DEBUG = envbool("DJANGO_DEBUG", True)

_DEV_SECRET_KEY = "django-insecure-delivery-sentinel-local-development-only"
SECRET_KEY = envsecret("DJANGO_SECRET_KEY", None) or ""
if not SECRET_KEY:
    if not DEBUG:
        raise EnvError(
            "DJANGO_SECRET_KEY: required when DJANGO_DEBUG is false "
            "(set DJANGO_SECRET_KEY or DJANGO_SECRET_KEY_FILE)"
        )
    SECRET_KEY = _DEV_SECRET_KEY

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost")
# Needed when the dashboard is served over HTTPS under a public name, e.g. https://ds.example.com
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])
# Off by default so a plain-HTTP deployment can still log in; turn on behind TLS.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = envbool("DJANGO_SECURE_COOKIES", False)
# Served over HTTPS through a proxy that terminates TLS (docs/deploy.md): trust its
# X-Forwarded-Proto (only when the proxy sets it and nothing else reaches the app).
if envbool("DJANGO_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = envbool("DJANGO_SSL_REDIRECT", False)
# Health checks and Prometheus may reach the app over plain HTTP inside its network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SECURE_HSTS_SECONDS = envint("DJANGO_HSTS_SECONDS", 0, min=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = envbool("DJANGO_HSTS_PRELOAD", False)
if not SECURE_HSTS_PRELOAD:
    # Asking browsers to preload the domain is a commitment for every subdomain, for months:
    # the operator's decision (docs/deploy.md), not a default to be warned about.
    SILENCED_SYSTEM_CHECKS = ["security.W021"]

INSTALLED_APPS = [
    "daphne",  # first: its runserver replaces Django's with an ASGI one
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "ninja",  # the JSON API's interactive docs, with its vendored Swagger UI assets
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"
ASGI_APPLICATION = "dashboard.asgi.application"

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

# --- Database ---------------------------------------------------------------------------------

_DATABASE_URL = envsecret("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
assert _DATABASE_URL is not None
try:
    DATABASES = {
        "default": dj_database_url.parse(
            _DATABASE_URL,
            conn_max_age=envint("DATABASE_CONN_MAX_AGE", 0, min=0),
            conn_health_checks=True,
        )
    }
except ValueError as exc:  # unknown scheme, bad port, ...
    raise EnvError(f"DATABASE_URL: {exc} (got {mask_url(_DATABASE_URL)!r})") from None

# Tests that start real worker processes need a test database those processes can open:
# bin/test points this at a file (SQLite's test database is otherwise in memory). A database
# server's test database is one they can open already.
_TEST_DB_FILE = envstr("DJANGO_TEST_DB_FILE", "")
if _TEST_DB_FILE and DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": _TEST_DB_FILE}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth -------------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- I18N / time ------------------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files (served by WhiteNoise from STATIC_ROOT; run collectstatic when DEBUG is off) -

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Fixed at import time: pytest-django flips DEBUG off at run time, and WhiteNoise would then
# look for a collected STATIC_ROOT that a development checkout does not have.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# --- Redis, Channels, Celery ------------------------------------------------------------------

REDIS_URL = envredisurl("REDIS_URL", "redis://127.0.0.1:6379/0")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": channel_layer_config(REDIS_URL),
    }
}

CELERY_BROKER_URL = envredisurl("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = envredisurl("CELERY_RESULT_BACKEND", REDIS_URL)
# TLS (rediss://) comes from each URL's query (README: "Redis with a password and TLS").
CELERY_BROKER_USE_SSL = redis_tls_options(CELERY_BROKER_URL)
CELERY_REDIS_BACKEND_USE_SSL = redis_tls_options(CELERY_RESULT_BACKEND)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redis redelivers a task not acked within visibility_timeout; keep it well above any task's
# run time. Long-running sentinel loops must not be plain tasks (see DESIGN.md).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_TIMEZONE = TIME_ZONE
# Keep Django's LOGGING (with secret redaction) in worker processes too.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    "rollup-metric-windows": {"task": "dashboard.tasks.rollup_windows", "schedule": 60.0},
    "prune-metric-windows": {"task": "dashboard.tasks.prune_windows", "schedule": 3600.0},
    "forget-deleted-sentinels": {
        "task": "dashboard.tasks.forget_deleted_sentinels",
        "schedule": 3600.0,
    },
    # Scenario runs whose runner died are marked aborted within a minute (dashboard/lab/runs.py).
    "reap-scenario-runs": {"task": "dashboard.tasks.reap_scenario_runs", "schedule": 15.0},
    # Guarantee lint of every cluster (docs/lint.md); DS_LINT_INTERVAL_S, default 5 minutes.
    "lint-clusters": {
        "task": "dashboard.tasks.lint_clusters",
        "schedule": float(envint("DS_LINT_INTERVAL_S", 300, min=10)),
    },
}

# --- Kafka ------------------------------------------------------------------------------------

KAFKA_BOOTSTRAP_SERVERS = bootstrap_servers()
# The project's local cluster (the lab's broker faults hit only it): LOCAL_KAFKA_NAME / _PORT.
_local_kafka = local_address()
LOCAL_KAFKA_NAME, LOCAL_KAFKA_PORT = _local_kafka.name, _local_kafka.port

# Sentinel hosting: every Celery worker supervises the enabled sentinels (workers/runtime/supervisor.py).
SENTINELS_ENABLED = envbool("SENTINELS_ENABLED", True)
# What a worker's sentinel supervisor calls for the enabled sentinels' specs, by id: the
# database's enabled sentinels, or (the soak's workers) "workers.engine.spec.specs_from_file".
SENTINEL_SPECS = envstr("SENTINEL_SPECS", "dashboard.models.enabled_specs")
# One-minute metric windows are kept this long (one-second windows: DS_W1_RETENTION_S in Redis).
METRIC_RETENTION_DAYS = envint("METRIC_RETENTION_DAYS", 30, min=1)
# Scrapers allowed on /metrics without a token (addresses or networks); empty: token only.
METRICS_ALLOWED_IPS = envnetworks("METRICS_ALLOWED_IPS", "")

# The live sockets' heartbeat: a browser treats a socket silent for 2.5 heartbeats as dropped
# and reconnects (the incidents list's socket, which carries nothing else, counts heartbeats as
# "nothing changed"). The browser tests shorten it to see a dropped connection sooner.
LIVE_HEARTBEAT_S = envint("DS_LIVE_HEARTBEAT_S", 10, min=1)

# --- On-call ----------------------------------------------------------------------------------

# Notification URLs that resolve to loopback, private or link-local addresses are refused
# unless this is on (the local stack and the tests turn it on).
ONCALL_ALLOW_PRIVATE_URLS = envbool("ONCALL_ALLOW_PRIVATE_URLS", False)
ONCALL_CONNECT_TIMEOUT_S = envint("ONCALL_CONNECT_TIMEOUT_S", 3, min=1)
ONCALL_READ_TIMEOUT_S = envint("ONCALL_READ_TIMEOUT_S", 5, min=1)
# Alert rules are evaluated this often (Celery beat).
ONCALL_EVALUATE_EVERY_S = envint("ONCALL_EVALUATE_EVERY_S", 2, min=1)
CELERY_BEAT_SCHEDULE["evaluate-alerts"] = {
    "task": "dashboard.tasks.evaluate_alerts",
    "schedule": float(ONCALL_EVALUATE_EVERY_S),
}
# Links in notifications point here.
DS_BASE_URL = envstr("DS_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
# Email channels: Django's mail backend (SMTP by default).
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25, min=1, max=65535)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = envsecret("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "delivery-sentinel@localhost")

# --- Logging ----------------------------------------------------------------------------------

LOG_LEVEL = envchoice("LOG_LEVEL", "INFO", ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
# json: one object per line (time, level, logger, process, message) for Loki / ELK.
LOG_FORMAT = envchoice("LOG_FORMAT", "plain", ["plain", "json"])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "workers.engine.redact.RedactingFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
    },
}
