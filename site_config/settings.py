"""Settings, all from the environment.

With nothing configured the app runs on the zero-setup default: a SQLite file and Dramatiq's
StubBroker drained by an in-process worker (`manage.py rundev`). Set DATABASE_URL (Postgres) and
REDIS_URL (or BROKER_URL, RabbitMQ) for the production shape: a real broker and separate
`rundramatiq` worker processes.
"""

import ipaddress
import os
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, "").strip() or default)


def env_list(name: str, default: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


def env_setting(variable: str, parse: Callable[[str], object], setting: str | None = None) -> None:
    """The setting (by default named as the variable) from the environment variable when it is set;
    when it is not, the setting is left out and the app's default holds (batches/conf.py)."""
    value = os.environ.get(variable, "").strip()
    if value:
        globals()[setting or variable] = parse(value)


def comma_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


# What the app writes besides its database server: the generated key below and the zero-setup SQLite
# file. The checkout by default; the image sets /data (its /app is root's, the app runs as uid 10001).
DATA_DIR = Path(os.environ.get("DATA_DIR") or BASE_DIR)


def writable_data_dir(what: str) -> Path:
    if not os.access(DATA_DIR, os.W_OK | os.X_OK):
        raise ImproperlyConfigured(
            f"{what}, and DATA_DIR ({DATA_DIR}) is not a directory this user (uid {os.getuid()}) can write to. "
            "Mount a writable volume there (docker run -v batches-data:/data ...) or set DATA_DIR."
        )
    return DATA_DIR


def generated_secret_key() -> str:
    """A key made once and kept in DATA_DIR, for when SECRET_KEY is not set: the zero-setup default, and
    containers that share the data volume (docker-compose.yml)."""
    path = DATA_DIR / ".secret_key"
    if not path.exists():
        draft = writable_data_dir("SECRET_KEY is not set") / f".secret_key.{secrets.token_hex(8)}"
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(secrets.token_urlsafe(50))
        try:
            path.hardlink_to(draft)  # atomic, and only one of two processes starting together wins
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    try:
        return path.read_text().strip()
    except OSError as error:
        raise ImproperlyConfigured(
            f"SECRET_KEY is not set, and the key kept in {path} cannot be read by this user (uid {os.getuid()}): "
            f"{error.strerror}. Set SECRET_KEY, or give the file to this user."
        ) from None


SECRET_KEY = os.environ.get("SECRET_KEY") or generated_secret_key()
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
    # Before ninja: its templates/ninja/swagger.html (the API docs page) replaces ninja's own.
    "batches.api",
    "batches.api.throttle",
    "ninja",
    "axes",
    "csp",
    "batches",  # before django_dramatiq: its `rundramatiq` wraps django_dramatiq's
    "django_dramatiq",
    "batches.web",
    "batches.admin",
    "batches.cli",
    "site_config",  # after django_dramatiq and auth: its admin.py replaces their admin registrations
    "site_config.demo",
]

MIDDLEWARE = [
    # First: /healthz and /readyz answer before host checks, HTTPS redirects, sessions and throttles.
    "batches.ops.health.HealthEndpoints",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "site_config.request_checks.RejectNulBytes",
    "batches.api.token_throttle.RefuseLockedClients",
    "batches.api.middleware.ApiBodyLimit",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # htmx requests turned away by login_required: 401 and a sentence, not the login page in a panel.
    "site_config.error_pages.SignedOutAnswers",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "site_config.viewer_zone.ViewerTimeZone",
    "site_config.http_headers.PrivateAnswers",
    # Last, as django-axes asks: it turns a lockout found during authentication into its page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "site_config.urls"
# A refused CSRF check: the site's 403 page (a fragment for htmx), its reason in plain words.
CSRF_FAILURE_VIEW = "site_config.error_pages.csrf_failure"
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

if not os.environ.get("DATABASE_URL"):
    writable_data_dir("DATABASE_URL is not set, so the database is a SQLite file in DATA_DIR")
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
        # Persistent connections on Postgres: a poll then costs no connection set-up (6 ms of 10).
        # Each web thread and worker thread keeps one: see site_config/web_server.py for the sizing.
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60" if os.environ.get("DATABASE_URL") else "0")),
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
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("SQLITE_TEST_NAME") or str(BASE_DIR / "test_db.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: it refuses a locked-out account or address before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
# Dates and times as the app writes them (batches/formats.py), in the admin too: 24-hour, zone named.
FORMAT_MODULE_PATH = ["site_config.formats"]

STATIC_URL = "static/"
STATIC_ROOT = os.environ.get("STATIC_ROOT") or None  # set where collectstatic runs (Dockerfile)
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve straight from the app folders as well, so `make run` needs no collectstatic step.
WHITENOISE_USE_FINDERS = True

# --- Production security (README, Security) --------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT")
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
# Subdomains of the app's own host name are covered by default (they are rarely anything but
# this app); preloading is a promise to browsers that is slow to undo, so it is opt-in.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD")
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]  # "not preloaded": a choice above
# Behind a proxy that terminates TLS and sets X-Forwarded-Proto (and strips it from clients).
if env_bool("SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# How many proxies in front of the app append the client's address to X-Forwarded-For
# (site_config/client_address.py); 0 means REMOTE_ADDR is the client.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
# The engine's API token throttle and /metrics see the client this way too (else REMOTE_ADDR).
BATCHES_CLIENT_ADDRESS = "site_config.client_address.client_address"

# Content-Security-Policy (django-csp 4): our own files only, no inline script, no eval. htmx
# runs under it with its inline indicator styles and eval off (templates/base.html).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],  # Swagger UI's icons are data: URLs
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# Logins (django-axes): after LOGIN_FAILURE_LIMIT failures for one account, or from one client
# address, logins are refused (429, templates/registration/locked_out.html) for the cool-off.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own, not the pair
AXES_RESET_ON_SUCCESS = True  # narrowed to the account and address that logged in: site_config/login_attempts.py
AXES_HANDLER = "site_config.login_attempts.LoginAttempts"  # axes' database handler: Postgres and SQLite
# Refused attempts during a lockout do not extend it: the cool-off the page names holds.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_CLIENT_IP_CALLABLE = "site_config.client_address.client_address"
AXES_DISABLE_ACCESS_LOG = True  # keep the failures the lockout needs, not a row for every login

# API tokens: after API_BAD_TOKEN_LIMIT unknown tokens from one client address within
# API_BAD_TOKEN_WINDOW_SECONDS, its bearer requests get 429 + Retry-After until the window ends.
env_setting("API_BAD_TOKEN_LIMIT", int, "BATCHES_API_BAD_TOKEN_LIMIT")
env_setting("API_BAD_TOKEN_WINDOW_SECONDS", int, "BATCHES_API_BAD_TOKEN_WINDOW_SECONDS")

# --- Dramatiq -------------------------------------------------------------------------------
# The broker: BROKER_URL=amqp://... selects RabbitMQ, and wins when REDIS_URL is set too (an explicit
# choice of broker over the Redis the machine may have for other things); REDIS_URL alone selects
# Redis; neither, the in-process StubBroker of the zero-setup default.
BROKER_URL = os.environ.get("BROKER_URL", "").strip()
REDIS_URL = os.environ.get("REDIS_URL", "")
if BROKER_URL and not BROKER_URL.startswith(("amqp://", "amqps://")):
    raise ImproperlyConfigured("BROKER_URL must be an amqp:// or amqps:// URL (RabbitMQ); set REDIS_URL for Redis.")
BROKER_KIND = "rabbitmq" if BROKER_URL else "redis" if REDIS_URL else "stub"
_DRAMATIQ_MIDDLEWARE = [
    "dramatiq.middleware.AgeLimit",
    "dramatiq.middleware.TimeLimit",
    "dramatiq.middleware.Callbacks",
    "dramatiq.middleware.Retries",
    "django_dramatiq.middleware.DbConnectionsMiddleware",
    "batches.engine.middleware.WorkerLifecycle",
]
if BROKER_KIND == "rabbitmq":
    DRAMATIQ_BROKER = {
        "BROKER": "dramatiq.brokers.rabbitmq.RabbitmqBroker",
        "OPTIONS": {"url": BROKER_URL},
        "MIDDLEWARE": _DRAMATIQ_MIDDLEWARE,
    }
elif BROKER_KIND == "redis":
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

# The worker's own metrics (Dramatiq's Prometheus middleware: messages, durations, errors), served
# by each `rundramatiq` on dramatiq_prom_host:dramatiq_prom_port (0.0.0.0:9191). Off unless asked:
# only one worker per machine can have the port.
if env_bool("DRAMATIQ_PROMETHEUS"):
    _DRAMATIQ_MIDDLEWARE.append("dramatiq.middleware.prometheus.Prometheus")

# --- Operating it -----------------------------------------------------------------------------
# /metrics (batches/ops/metrics.py) answers these addresses or networks (as site_config/client_address.py
# sees the client), and any request bearing `Authorization: Bearer METRICS_TOKEN`.
env_setting("METRICS_ALLOWED_ADDRESSES", comma_list, "BATCHES_METRICS_ALLOWED_ADDRESSES")
for _entry in globals().get("BATCHES_METRICS_ALLOWED_ADDRESSES", []):
    try:
        ipaddress.ip_network(_entry, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"METRICS_ALLOWED_ADDRESSES: {_entry!r} is not an address or network.") from None
env_setting("METRICS_TOKEN", str, "BATCHES_METRICS_TOKEN")

# --- The engine -----------------------------------------------------------------------------
# Each BATCHES_* variable that is set becomes the setting of the same name; batches/conf.py has every
# one's default and meaning (and the README's table), e.g. BATCHES_CHECKPOINT_PAUSE_SECONDS: 0.1 s
# after each checkpoint on SQLite, whose one writer at a time would otherwise keep the web server waiting.
for _name in (
    "BATCHES_CHECKPOINT_SECONDS",
    "BATCHES_CHECKPOINT_PAUSE_SECONDS",
    "BATCHES_MESSAGE_SECONDS",
    "BATCHES_LEASE_SECONDS",
    "BATCHES_SWEEP_SECONDS",
    "BATCHES_SLICE_SECONDS",
    "BATCHES_WORKER_HEARTBEAT_SECONDS",
    "BATCHES_WORKER_SILENCE_SECONDS",
    "BATCHES_TRANSACTION_GRACE_SECONDS",
    "BATCHES_STALL_SECONDS",
    "BATCHES_PROGRESS_LOG_SECONDS",
):
    env_setting(_name, float)
for _name in (
    "BATCHES_MAX_RECOVERIES",
    "BATCHES_MAX_ACTIVE_PER_USER",
    "BATCHES_STARTS_PER_MINUTE",
    "BATCHES_NOTIFY_ATTEMPTS",
):
    env_setting(_name, int)
env_setting("BATCHES_SITE_URL", str)

# --- Email (README, Notifications) ------------------------------------------------------------
# The emails batches send when they end go through Django's email backend: with EMAIL_HOST set, the
# SMTP server there (EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS or EMAIL_USE_SSL);
# without, the console (the worker's log), so `make run` shows them and sends nothing.
# EMAIL_BACKEND names any other backend.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "").strip() or (
    "django.core.mail.backends.smtp.EmailBackend"
    if os.environ.get("EMAIL_HOST", "").strip()
    else "django.core.mail.backends.console.EmailBackend"
)
env_setting("EMAIL_HOST", str)
env_setting("EMAIL_PORT", int)
env_setting("EMAIL_HOST_USER", str)
env_setting("EMAIL_HOST_PASSWORD", str)
env_setting("EMAIL_USE_TLS", lambda value: env_bool("EMAIL_USE_TLS"))
env_setting("EMAIL_USE_SSL", lambda value: env_bool("EMAIL_USE_SSL"))
env_setting("DEFAULT_FROM_EMAIL", str)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)  # seconds: a mail server that hangs holds an outbox row no longer

# --- The JSON API ---------------------------------------------------------------------------
env_setting("API_MAX_BODY_BYTES", int, "BATCHES_API_MAX_BODY_BYTES")

# --- Exports: files in Django's default storage (FileSystemStorage) under MEDIA_ROOT, downloaded
# through the batches' pages only (never served from MEDIA_URL: each download checks who may see it).
MEDIA_ROOT = DATA_DIR / "media"
env_setting("BATCHES_EXPORT_EXPIRY_SECONDS", float)
env_setting("BATCHES_EXPORT_STORAGE", str)

# --- The demo operation ---------------------------------------------------------------------
DEMO_TICKETS_PER_EVENT = int(os.environ.get("DEMO_TICKETS_PER_EVENT", "2000"))
DEMO_ITEM_DELAY_MS = int(os.environ.get("DEMO_ITEM_DELAY_MS", "50"))
DEMO_FAIL_EVERY = int(os.environ.get("DEMO_FAIL_EVERY", "97"))
DEMO_ITEM_TIME_LIMIT = float(os.environ.get("DEMO_ITEM_TIME_LIMIT", "30"))
DEMO_EXPORT_CHUNK_SIZE = int(os.environ.get("DEMO_EXPORT_CHUNK_SIZE", "50000"))

# LOG_FORMAT=json: every line one JSON object (batches/engine/events.py), a batch event's fields at the top.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "text").strip().lower()
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured("LOG_FORMAT is text (the default) or json.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "site_config.log_format.JsonLines"}, "message": {"format": "%(message)s"}},
    "filters": {"quiet_probes": {"()": "site_config.log_format.QuietProbes"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", **({"formatter": "json"} if LOG_FORMAT == "json" else {})},
        # granian's access log as granian writes it (stdout, the line alone), less the answered probes.
        "access": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "json" if LOG_FORMAT == "json" else "message",
            "filters": ["quiet_probes"],
        },
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # django-axes' version banner at every process start: not news, and not a terminal client's output.
        "axes.apps": {"level": "WARNING"},
        "granian.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}
