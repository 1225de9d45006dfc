"""Patchbay settings: every value comes from the environment (django-environ).

`.env.example` documents each variable. Defaults are safe for local use: SQLite under
`var/`, tasks run in-process, outbound requests to private networks refused.
"""

import base64
import hashlib
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# Without DEBUG (production), SECRET_KEY and FIELD_ENCRYPTION_KEYS must be set: the fallbacks
# below are public (they are in this file), so anyone could forge sessions and decrypt every
# stored secret. `make run` sets DEBUG=true; the test suite sets test-only keys (pyproject.toml).
_GENERATE_SECRET_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
_GENERATE_FERNET_KEY = (
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set and DEBUG is false (production). Set SECRET_KEY to a long "
            f"random string, generated with: {_GENERATE_SECRET_KEY} "
            "(for local development only, set DEBUG=true instead)."
        )
    SECRET_KEY = "patchbay-insecure-local-development-key-change-me"
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Absolute base URL of this portal, used to build webhook and click-to-call URLs
# that third parties call back.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "oauth2_provider",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "portal",
    "tenants",
    "integrations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves STATIC_ROOT (filled by `manage.py collectstatic`) in production, from gunicorn.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

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
                "tenants.context_processors.membership",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'patchbay.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# SQLite cannot create the folder of its file: make it (var/ on a fresh clone).
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    _sqlite_name = str(DATABASES["default"].get("NAME") or "")
    if _sqlite_name and _sqlite_name != ":memory:" and not _sqlite_name.startswith("file:"):
        Path(_sqlite_name).parent.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://patchbay")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Messages live in the session, server-side: a one-time secret shown in a flash message
# never travels in a cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# `manage.py collectstatic` copies every static file here; WhiteNoise serves them from it.
STATIC_ROOT = env.path("STATIC_ROOT", default=str(VAR_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Gzip copies (and Brotli, if installed) at collectstatic; no manifest, so templates render
    # before collectstatic has run (tests, `make run`).
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Files received with PBX webhooks (voicemail and fax bodies); keep it on persistent storage.
MEDIA_ROOT = env.path("MEDIA_ROOT", default=str(VAR_DIR / "media"))
MEDIA_URL = "media/"

# --- Encryption at rest -------------------------------------------------------------------
# Comma-separated Fernet keys: the first encrypts, all decrypt (rotate by prepending a new
# key, then run `manage.py rotate_encryption_keys`). Required when DEBUG is false; with
# DEBUG=true (local use only) a key is derived from SECRET_KEY when it is unset.
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])
if not FIELD_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS is not set and DEBUG is false (production). Set it to a "
            f"Fernet key, generated with: {_GENERATE_FERNET_KEY} "
            "(comma-separated keys: the first encrypts, all decrypt). Keep it safe: stored "
            "secrets cannot be read without it."
        )
    FIELD_ENCRYPTION_KEYS = [
        base64.urlsafe_b64encode(hashlib.sha256(SECRET_KEY.encode()).digest()).decode()
    ]

# --- Outbound HTTP ------------------------------------------------------------------------
# Refuse private, loopback, link-local and metadata addresses unless explicitly allowed
# (the demo and the tests allow them to reach sandbox servers on 127.0.0.1).
OUTBOUND_ALLOW_PRIVATE_NETWORKS = env.bool("OUTBOUND_ALLOW_PRIVATE_NETWORKS", default=False)
OUTBOUND_TIMEOUT_SECONDS = env.float("OUTBOUND_TIMEOUT_SECONDS", default=10.0)

# --- Celery -------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=CELERY_BROKER_URL or "")
# Without a broker, tasks run in-process at once (the embedded default).
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Seconds a task taken by a worker stays invisible to others before the broker hands it out
# again (Redis). Tasks are acknowledged late, so a task of a killed worker comes back after this.
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
# The queue tasks are sent to and workers consume by default.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
# Task modules outside the autodiscovered `<app>.tasks`.
CELERY_IMPORTS = ("integrations.pipeline_tasks",)
# Periodic tasks (run `celery -A portal beat` next to the workers).
CELERY_BEAT_SCHEDULE = {
    "delivery-log-prune": {
        "task": "integrations.delivery_log_prune",
        "schedule": crontab(hour=3, minute=17),
    },
    "inbox-sweep": {
        "task": "integrations.inbox_sweep",
        "schedule": 60.0,
    },
    "callback-sweep": {
        "task": "integrations.callback_sweep",
        "schedule": 60.0,
    },
    "message-sweep": {
        "task": "integrations.message_sweep",
        "schedule": 60.0,
    },
    "call-activity-sweep": {
        "task": "integrations.call_activity_sweep",
        "schedule": 60.0,
    },
}

# --- Delivery log -------------------------------------------------------------------------
# Days an outbound request stays in the delivery log; older entries are pruned daily.
DELIVERY_LOG_RETENTION_DAYS = env.int("DELIVERY_LOG_RETENTION_DAYS", default=30)
if DELIVERY_LOG_RETENTION_DAYS < 1:
    raise ImproperlyConfigured("DELIVERY_LOG_RETENTION_DAYS must be 1 or more.")

# --- Event pipeline: inbox, webhooks, outbound callbacks ---------------------------------
# An inbox event left in "received" or "processing" this long (a lost broker message, a killed
# worker) is enqueued again by the sweeper (`integrations.inbox_sweep`, every minute).
INBOX_STUCK_AFTER_SECONDS = env.int("INBOX_STUCK_AFTER_SECONDS", default=300)
# Attempts at an event whose handler asks to be retried later, before it is marked failed.
INBOX_MAX_ATTEMPTS = env.int("INBOX_MAX_ATTEMPTS", default=8)
# Modules whose import registers inbox handlers (`@inbox_handler`); loaded before processing.
INBOX_HANDLER_MODULES = [
    "integrations.callbacks",
    "integrations.messaging_tasks",
    "integrations.call_logging",
]
# Largest JSON webhook body, and largest voicemail/fax file body; larger requests get 413.
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=1024 * 1024)
WEBHOOK_MAX_FILE_BYTES = env.int("WEBHOOK_MAX_FILE_BYTES", default=25 * 1024 * 1024)
# Standard Webhooks signatures older or newer than this many seconds are refused.
WEBHOOK_SIGNATURE_TOLERANCE_SECONDS = env.int("WEBHOOK_SIGNATURE_TOLERANCE_SECONDS", default=300)
# Outbound callbacks: attempts per event, exponential backoff with jitter between them
# (a Retry-After is honoured), and the run of failed attempts that disables a subscription.
CALLBACK_MAX_ATTEMPTS = env.int("CALLBACK_MAX_ATTEMPTS", default=8)
CALLBACK_RETRY_BASE_SECONDS = env.float("CALLBACK_RETRY_BASE_SECONDS", default=30.0)
CALLBACK_RETRY_MAX_SECONDS = env.float("CALLBACK_RETRY_MAX_SECONDS", default=3600.0)
CALLBACK_MAX_CONSECUTIVE_FAILURES = env.int("CALLBACK_MAX_CONSECUTIVE_FAILURES", default=10)
CALLBACK_TIMEOUT_SECONDS = env.float("CALLBACK_TIMEOUT_SECONDS", default=OUTBOUND_TIMEOUT_SECONDS)
for _name in (
    "INBOX_STUCK_AFTER_SECONDS",
    "INBOX_MAX_ATTEMPTS",
    "WEBHOOK_MAX_BODY_BYTES",
    "WEBHOOK_MAX_FILE_BYTES",
    "CALLBACK_MAX_ATTEMPTS",
    "CALLBACK_MAX_CONSECUTIVE_FAILURES",
):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be 1 or more.")
del _name

# --- SMS messaging and caller lookup ------------------------------------------------------
# Attempts at sending one SMS when the provider fails transiently (timeout, 5xx, 429), with
# exponential backoff and jitter between them (seconds; a Retry-After is honoured).
MESSAGE_SEND_MAX_ATTEMPTS = env.int("MESSAGE_SEND_MAX_ATTEMPTS", default=5)
MESSAGE_SEND_RETRY_BASE_SECONDS = env.float("MESSAGE_SEND_RETRY_BASE_SECONDS", default=10.0)
MESSAGE_SEND_RETRY_MAX_SECONDS = env.float("MESSAGE_SEND_RETRY_MAX_SECONDS", default=600.0)
# Caller lookup: time budget of each CRM's FindContact (seconds; CRMs are asked concurrently,
# a slower one is reported as an error entry) and how long answers are cached.
LOOKUP_TIMEOUT_SECONDS = env.float("LOOKUP_TIMEOUT_SECONDS", default=2.0)
LOOKUP_CACHE_SECONDS = env.int("LOOKUP_CACHE_SECONDS", default=300)
if MESSAGE_SEND_MAX_ATTEMPTS < 1:
    raise ImproperlyConfigured("MESSAGE_SEND_MAX_ATTEMPTS must be 1 or more.")
if LOOKUP_TIMEOUT_SECONDS <= 0:
    raise ImproperlyConfigured("LOOKUP_TIMEOUT_SECONDS must be more than 0.")
# --- Call logging ---------------------------------------------------------------------------
# Retries of a call's CRM logging after a transient failure (timeout, 5xx, 429), with
# exponential backoff and full jitter between them (seconds; a Retry-After is honoured). After
# the last one the activity is marked failed, with a Retry button on the Calls page.
CALL_LOG_MAX_RETRIES = env.int("CALL_LOG_MAX_RETRIES", default=5)
CALL_LOG_RETRY_BASE_SECONDS = env.float("CALL_LOG_RETRY_BASE_SECONDS", default=10.0)
CALL_LOG_RETRY_MAX_SECONDS = env.float("CALL_LOG_RETRY_MAX_SECONDS", default=600.0)
if CALL_LOG_MAX_RETRIES < 0:
    raise ImproperlyConfigured("CALL_LOG_MAX_RETRIES must be 0 or more.")
if CALL_LOG_RETRY_BASE_SECONDS <= 0 or CALL_LOG_RETRY_MAX_SECONDS < CALL_LOG_RETRY_BASE_SECONDS:
    raise ImproperlyConfigured(
        "CALL_LOG_RETRY_BASE_SECONDS must be more than 0 and at most CALL_LOG_RETRY_MAX_SECONDS."
    )

# --- Email (optional) --------------------------------------------------------------------
# Set EMAIL_HOST to email admins when an integration needs reconnecting; unset = portal
# notices only.
EMAIL_HOST = env.str("EMAIL_HOST", default="")
EMAIL_PORT = env.int("EMAIL_PORT", default=587)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=True)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="patchbay@localhost")

# Benchmarks only (bench/webhook_ingest.py): serve a bare view at /bench/bare that answers 200.
BENCH_BARE_VIEW = env.bool("BENCH_BARE_VIEW", default=False)

# --- REST API -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    # OAuth2 first: DRF takes the WWW-Authenticate challenge from the first class, so a
    # missing, expired or invalid token is a 401 (Bearer) rather than a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "oauth2_provider.contrib.rest_framework.OAuth2Authentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["portal.api.permissions.IsPortalMemberWithScope"],
    "DEFAULT_PAGINATION_CLASS": "portal.api.pagination.PagePagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "portal.api.exceptions.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Patchbay API",
    "DESCRIPTION": "Manage organizations, PBX users, SMS numbers and integrations.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "OAUTH2_FLOWS": ["clientCredentials", "authorizationCode"],
    "OAUTH2_AUTHORIZATION_URL": "/o/authorize/",
    "OAUTH2_TOKEN_URL": "/o/token/",
    # Swagger UI from drf-spectacular-sidecar's static files, not a CDN: /api/docs/ works
    # offline and behind a strict firewall.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
OAUTH2_PROVIDER = {
    "SCOPES": {"read": "Read your organizations", "write": "Change your organizations"},
    "DEFAULT_SCOPES": ["read"],
    "ACCESS_TOKEN_EXPIRE_SECONDS": 3600,
    "PKCE_REQUIRED": False,
    # A client-credentials token acts as the user who owns its Application.
    "OAUTH2_VALIDATOR_CLASS": "portal.api.oauth.ApplicationOwnerOAuth2Validator",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
