"""PAS Portal settings: one env-driven module.

Every variable is read through ``pasportal.env`` helpers, so a bad value stops
start-up with a message naming the variable. Embedded defaults (SQLite in WAL
mode, django-q2's ORM broker, files under ``var/``) need no variables at all;
``PAS_ENV=production`` turns the safety checks on and requires the secrets.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import dj_database_url

from pasportal.env import (
    ConfigError,
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
PAS_ENV = env_choice("PAS_ENV", "development", ("development", "test", "production"))
PRODUCTION = PAS_ENV == "production"
VAR_DIR = Path(env_str("PAS_VAR_DIR", str(BASE_DIR / "var")))


def _read_secret_file(path: Path, variable: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror}") from None
    if len(value) < 32:
        raise ConfigError(
            f"{variable}: the secret in {path} is shorter than 32 characters"
        )
    return value


def _secret(env_name: str, file_env_name: str, dev_file: str) -> str:
    """A secret from the environment, a file, or (not in production) a generated file."""
    direct = env_str(env_name, "")
    if direct:
        if len(direct) < 32:
            raise ConfigError(f"{env_name} must be at least 32 characters")
        return direct
    file_name = env_str(file_env_name, "")
    if file_name:
        return _read_secret_file(Path(file_name), file_env_name)
    if PRODUCTION:
        raise ConfigError(
            f"{env_name} or {file_env_name} must be set when PAS_ENV=production"
        )
    # Development: generate once and keep it, so sessions and the audit chain
    # survive restarts. The file lives outside the database on purpose.
    path = VAR_DIR / dev_file
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48), encoding="utf-8")
        path.chmod(0o600)
    return _read_secret_file(path, file_env_name)


SECRET_KEY = _secret("DJANGO_SECRET_KEY", "DJANGO_SECRET_KEY_FILE", "secret_key")
# The audit chain's HMAC key: never stored in the database it protects.
PAS_AUDIT_KEY = _secret("PAS_AUDIT_KEY", "PAS_AUDIT_KEY_FILE", "audit.key")
# Fernet keys for inline connector secrets (newest first). connectors.secrets is
# framework-free and reads the environment, so a generated development key is
# exported there; production must set PAS_FERNET_KEYS itself to use inline secrets.
if not os.environ.get("PAS_FERNET_KEYS") and not PRODUCTION:
    _fernet_file = VAR_DIR / "fernet.key"
    if not _fernet_file.exists():
        from cryptography.fernet import Fernet

        VAR_DIR.mkdir(parents=True, exist_ok=True)
        _fernet_file.write_text(Fernet.generate_key().decode(), encoding="utf-8")
        _fernet_file.chmod(0o600)
    os.environ["PAS_FERNET_KEYS"] = _fernet_file.read_text(encoding="utf-8").strip()
PAS_AUDIT_HEAD_FILE = Path(
    env_str("PAS_AUDIT_HEAD_FILE", str(VAR_DIR / "audit-head.json"))
)

DEBUG = env_bool("DJANGO_DEBUG", default=not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ConfigError("DJANGO_DEBUG must be off when PAS_ENV=production")

ALLOWED_HOSTS = env_list(
    "DJANGO_ALLOWED_HOSTS",
    [] if PRODUCTION else ["127.0.0.1", "localhost", "testserver"],
)
if PRODUCTION and not ALLOWED_HOSTS:
    raise ConfigError("DJANGO_ALLOWED_HOSTS must be set when PAS_ENV=production")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "guardian",
    "django_q",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "governance",
    "connectors",
    "migration",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "pasportal.middleware.RequestIdMiddleware",
    "pasportal.middleware.ApiNoStoreMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "pasportal.urls"
WSGI_APPLICATION = "pasportal.wsgi.application"

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
    }
]


def _database() -> dict[str, Any]:
    url = env_url("DATABASE_URL", ("postgres", "postgresql", "sqlite"))
    if url:
        config: dict[str, Any] = dj_database_url.parse(url, conn_max_age=60)
        return config
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(VAR_DIR / "pasportal.sqlite3"),
        "OPTIONS": {
            # WAL lets the web server read while a q2 worker writes; IMMEDIATE
            # takes the write lock at BEGIN so two writers queue instead of
            # failing with "database is locked" half-way through.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        },
    }


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
# No guardian anonymous user: anonymous visitors get nothing, by design.
ANONYMOUS_USER_NAME = None
GUARDIAN_RAISE_403 = False
GUARDIAN_RENDER_403 = False

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "Europe/London"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("PAS_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Serve straight from the finders too, so a fresh checkout needs no collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = not PRODUCTION
# Third-party front-end packages are installed by `make` from npm (pinned in
# package.json) and served from node_modules: nothing vendored in the repo.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/nhsuk", BASE_DIR / "node_modules" / "nhsuk-frontend" / "dist" / "nhsuk"),
    ("vendor/htmx", BASE_DIR / "node_modules" / "htmx.org" / "dist"),
    ("vendor/axe", BASE_DIR / "node_modules" / "axe-core"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
MEDIA_ROOT = VAR_DIR / "media"

# --- security -------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("PAS_SESSION_SECONDS", 8 * 3600, minimum=300)
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- task queue (django-q2) -------------------------------------------------
PAS_REDIS_URL = env_url("PAS_REDIS_URL", ("redis", "rediss"))
# A cache every process shares: django-q2 publishes cluster stats through it,
# which is how /healthz in the web process sees the worker cluster.
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": PAS_REDIS_URL,
        }
        if PAS_REDIS_URL
        else {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "pasportal_cache",
        }
    )
}
_Q_TIMEOUT = env_int("PAS_Q_TIMEOUT", 3600, minimum=10)
_Q_RETRY = env_int("PAS_Q_RETRY", _Q_TIMEOUT + 120, minimum=11)
if _Q_RETRY <= _Q_TIMEOUT:
    # django-q2 re-queues a task after `retry` seconds; if that is shorter than
    # the timeout, a long task runs twice at once.
    raise ConfigError("PAS_Q_RETRY must be greater than PAS_Q_TIMEOUT")
Q_CLUSTER: dict[str, Any] = {
    "name": env_str("PAS_Q_NAME", "pasportal"),
    "workers": env_int("PAS_Q_WORKERS", 2, minimum=1, maximum=64),
    "timeout": _Q_TIMEOUT,
    "retry": _Q_RETRY,
    "max_attempts": env_int("PAS_Q_MAX_ATTEMPTS", 3, minimum=1, maximum=20),
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 1000,
    "label": "Task queue",
    "poll": 0.5,
}
if PAS_REDIS_URL:
    Q_CLUSTER["redis"] = PAS_REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- REST API ---------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "pasportal.api.ApiPagination",
    "EXCEPTION_HANDLER": "pasportal.api.api_exception_handler",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "PAS Portal API",
    "DESCRIPTION": "Governed migration of NHS PAS data.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One named enum per choice set, so clients get stable type names.
    "ENUM_NAME_OVERRIDES": {
        "ReviewStatusEnum": "migration.models.ReviewStatus",
        "RunStateEnum": "migration.models.RunState",
        "MissStateEnum": "migration.models.MissQueueEntry.State",
        "CheckStatusEnum": "governance.models.CheckStatus",
        "HealthStatusEnum": "connectors.models.HealthStatus",
        "ConnectorRoleEnum": "connectors.models.ConnectorRole",
        "ProjectRoleEnum": "governance.roles.Role",
        "EquivalenceEnum": "migration.models.Equivalence",
        "GateOutcomeEnum": "migration.models.GateOutcome",
        "SignOffDecisionEnum": "governance.models.SignOffDecision",
    },
}

# --- product knobs ------------------------------------------------------------
PAS_TARGET_URL = env_url("PAS_TARGET_URL", ("postgres", "postgresql"))
PAS_DATA_DIR = Path(env_str("PAS_DATA_DIR", str(VAR_DIR / "data")))
PAS_RUN_LEASE_SECONDS = env_int("PAS_RUN_LEASE_SECONDS", 60, minimum=5)
PAS_HEARTBEAT_SECONDS = env_int("PAS_HEARTBEAT_SECONDS", 10, minimum=1)
# Scale-out: a run with parallel_ranges=N splits each table into at most N key
# ranges of at least this many rows, each a separate q2 task.
PAS_RANGE_MIN_ROWS = env_int("PAS_RANGE_MIN_ROWS", 5000, minimum=100)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "pasportal.logging.RedactSecretsFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact"],
        },
    },
    "root": {"handlers": ["console"], "level": env_str("PAS_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
    },
}
