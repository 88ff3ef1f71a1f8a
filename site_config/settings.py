"""Settings, all from the environment.

With nothing configured the app runs on the zero-setup default: a SQLite file and Dramatiq's
StubBroker drained by an in-process worker (`manage.py rundev`). Set DATABASE_URL (Postgres) and
REDIS_URL for the production shape: a Redis broker and separate `rundramatiq` worker processes.
"""

import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


def local_secret_key() -> str:
    """A per-checkout key for the zero-setup default; production sets SECRET_KEY."""
    path = BASE_DIR / ".secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = os.environ.get("SECRET_KEY") or local_secret_key()
DEBUG = env_bool("DEBUG")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "ninja",
    "django_dramatiq",
    "batches",
    "batches.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "batches.api.middleware.ApiBodyLimit",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "site_config.urls"
WSGI_APPLICATION = "site_config.wsgi.application"

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

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "0")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes the write lock at BEGIN, so the start guard is serialised on SQLite too
    # (SQLite ignores SELECT ... FOR UPDATE). WAL lets the web server read while a worker writes.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Threads of a test share the test database, so it must be a file, not memory.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test_db.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = os.environ.get("STATIC_ROOT") or None  # set where collectstatic runs (Dockerfile)
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve straight from the app folders as well, so `make run` needs no collectstatic step.
WHITENOISE_USE_FINDERS = True

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# --- Dramatiq -------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
_DRAMATIQ_MIDDLEWARE = [
    "dramatiq.middleware.AgeLimit",
    "dramatiq.middleware.TimeLimit",
    "dramatiq.middleware.Callbacks",
    "dramatiq.middleware.Retries",
    "django_dramatiq.middleware.DbConnectionsMiddleware",
    "batches.middleware.WorkerLifecycle",
]
if REDIS_URL:
    DRAMATIQ_BROKER = {
        "BROKER": "dramatiq.brokers.redis.RedisBroker",
        "OPTIONS": {"url": REDIS_URL, "namespace": os.environ.get("DRAMATIQ_NAMESPACE", "batches")},
        "MIDDLEWARE": _DRAMATIQ_MIDDLEWARE,
    }
else:
    DRAMATIQ_BROKER = {
        "BROKER": "dramatiq.brokers.stub.StubBroker",
        "OPTIONS": {},
        "MIDDLEWARE": _DRAMATIQ_MIDDLEWARE,
    }
DRAMATIQ_AUTODISCOVER_MODULES = ["actors"]

# --- The engine -----------------------------------------------------------------------------
# How long a checkpoint may run before its effects, cursor and counters are committed together.
BATCHES_CHECKPOINT_SECONDS = float(os.environ.get("BATCHES_CHECKPOINT_SECONDS", "0.5"))
# A pause after each checkpoint. SQLite has one writer at a time and its busy handler polls, so
# without a pause a running batch starves the web server's writes (a login, a start).
BATCHES_CHECKPOINT_PAUSE_SECONDS = float(
    os.environ.get(
        "BATCHES_CHECKPOINT_PAUSE_SECONDS", "0.1" if DATABASES["default"]["ENGINE"].endswith("sqlite3") else "0"
    )
)
# How long one Dramatiq message keeps working on a chunk before handing over to a fresh message.
BATCHES_MESSAGE_SECONDS = float(os.environ.get("BATCHES_MESSAGE_SECONDS", "60"))
# A running batch is stale once it has gone this long plus its operation's item time limit
# without a checkpoint; the recovery sweep then re-enqueues its work.
BATCHES_LEASE_SECONDS = float(os.environ.get("BATCHES_LEASE_SECONDS", "30"))
# How often each worker sweeps for stale batches (it also sweeps as it starts).
BATCHES_SWEEP_SECONDS = float(os.environ.get("BATCHES_SWEEP_SECONDS", "15"))
# Recoveries in a row without a single checkpoint before a batch is failed as unresumable.
BATCHES_MAX_RECOVERIES = int(os.environ.get("BATCHES_MAX_RECOVERIES", "8"))

# --- The JSON API ---------------------------------------------------------------------------
API_MAX_BODY_BYTES = int(os.environ.get("API_MAX_BODY_BYTES", str(64 * 1024)))

# --- The demo operation ---------------------------------------------------------------------
DEMO_TICKETS_PER_EVENT = int(os.environ.get("DEMO_TICKETS_PER_EVENT", "2000"))
DEMO_ITEM_DELAY_MS = int(os.environ.get("DEMO_ITEM_DELAY_MS", "50"))
DEMO_FAIL_EVERY = int(os.environ.get("DEMO_FAIL_EVERY", "97"))
DEMO_ITEM_TIME_LIMIT = float(os.environ.get("DEMO_ITEM_TIME_LIMIT", "30"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
