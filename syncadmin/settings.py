"""SyncAdmin settings, read from environment variables (see README, "Settings")."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from syncadmin.env import envbool, envint, envport, envpublicurl, envsecret, envstr, envurl
from tracking.crypto import key_problem
from tracking.jobqueues import rq_queues

django_stubs_ext.monkeypatch()  # lets ModelAdmin[Model] and friends be subscripted at run time

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = envbool("DEBUG", False)
SECRET_KEY = envsecret("SECRET_KEY") or ""
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off")
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"

# Comma-separated Fernet keys, newest first; older keys still decrypt (see docs on key rotation).
SYNCADMIN_ENCRYPTION_KEY = envsecret("SYNCADMIN_ENCRYPTION_KEY") or ""
if not DEBUG and (_key_problem := key_problem(SYNCADMIN_ENCRYPTION_KEY)):
    # Refused at start-up, not at the first use of a secret (`check --deploy` says the same).
    raise ImproperlyConfigured(_key_problem)

ALLOWED_HOSTS = [
    h.strip() for h in envstr("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()
]
# The public origin(s) behind a TLS-terminating proxy, e.g. https://syncadmin.example.com
CSRF_TRUSTED_ORIGINS = [o.strip() for o in envstr("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]
if envbool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Production defaults: cookies only over HTTPS, HSTS, no sniffing, no framing.
SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Preloading HSTS is a commitment for the whole domain: the operator's decision (SECURE_HSTS_PRELOAD).
SILENCED_SYSTEM_CHECKS = [] if envbool("SECURE_HSTS_PRELOAD", False) else ["security.W021"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",  # its translations of relative times ("vor 3 Minuten")
    "django_filters",
    "django_htmx",
    "django_rq",
    "axes",
    "tracking",
    "syncadmin.web",
]
# The development tools (Exchange simulator, demo, runall, generate_load): on for development, off in
# production, where their dependencies (the `demo` extra) are not installed.
SYNCADMIN_DEVTOOLS = envbool("SYNCADMIN_DEVTOOLS", DEBUG)
if SYNCADMIN_DEVTOOLS:
    INSTALLED_APPS.append("syncadmin.devtools")

MIDDLEWARE = [
    # First: refuses an oversized body before anything reads it (MAX_REQUEST_MB).
    "syncadmin.web.request_size.RequestSizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After authentication (no-store for signed-in people); after WhiteNoise, so static files stay cacheable.
    "syncadmin.web.security_headers.SecurityHeadersMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "syncadmin.web.middleware.PersonalPreferencesMiddleware",
    # Last, as django-axes asks: it turns a lockout signalled during sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# Error pages and reports hide secrets marked sensitive, with DEBUG on too (syncadmin/web/error_reports.py).
DEFAULT_EXCEPTION_REPORTER_FILTER = "syncadmin.web.error_reports.SafeAlsoInDebugFilter"

ROOT_URLCONF = "syncadmin.urls"
WSGI_APPLICATION = "syncadmin.wsgi.application"

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
                "django.template.context_processors.i18n",
                "syncadmin.web.context.navigation",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        envstr("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'syncadmin.sqlite3'}"),
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", 0),
    )
}
# Django's psycopg pool (0: off): a process keeps at most this many connections open and hands them to its
# threads; forking RQ workers gain nothing from it, a threaded web server does (docs/deployment.md).
DATABASE_POOL_MAX_SIZE = envint("DATABASE_POOL_MAX_SIZE", 0, minimum=0)
DATABASE_POOL_MIN_SIZE = envint("DATABASE_POOL_MIN_SIZE", 1, minimum=0)
DATABASE_POOL_TIMEOUT = envint("DATABASE_POOL_TIMEOUT", 10, minimum=1)  # seconds to wait for a connection
if DATABASE_POOL_MAX_SIZE:
    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_POOL_MAX_SIZE needs PostgreSQL (a postgres:// DATABASE_URL)")
    if DATABASES["default"]["CONN_MAX_AGE"]:
        raise ImproperlyConfigured("DATABASE_POOL_MAX_SIZE and DATABASE_CONN_MAX_AGE exclude each other")
    if DATABASE_POOL_MIN_SIZE > DATABASE_POOL_MAX_SIZE:
        raise ImproperlyConfigured(
            f"DATABASE_POOL_MIN_SIZE={DATABASE_POOL_MIN_SIZE} is above "
            f"DATABASE_POOL_MAX_SIZE={DATABASE_POOL_MAX_SIZE}"
        )
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": DATABASE_POOL_MIN_SIZE,
        "max_size": DATABASE_POOL_MAX_SIZE,
        "timeout": DATABASE_POOL_TIMEOUT,
    }
# Behind PgBouncer in transaction mode a cursor cannot outlive its transaction on one server connection;
# Django's prepared statements are already off (docs/deployment.md, "PostgreSQL connections").
DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = envbool("DATABASE_DISABLE_SERVER_SIDE_CURSORS", False)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Scans write while the web reads: WAL and a busy timeout keep SQLite usable for that.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            # Take the write lock at BEGIN: a deferred transaction that reads then writes while another
            # process writes fails at once with "database is locked" instead of waiting its turn.
            "transaction_mode": "IMMEDIATE",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Alert mail (tracking-rules §9) through Django's SMTP backend; links in it point to SYNCADMIN_SITE_URL.
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envport("EMAIL_PORT", 25)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = envsecret("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = 30  # seconds: a mail server that hangs must not hold a worker for long
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "syncadmin@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
SYNCADMIN_SITE_URL = envurl("SYNCADMIN_SITE_URL", "http://127.0.0.1:8000")
# Push (Microsoft Graph change notifications, docs/deployment.md): only when SYNCADMIN_SITE_URL is set, to
# the public https address Graph posts to (/graph/notifications/, /graph/lifecycle/); None: polling only.
GRAPH_PUSH_BASE_URL = envpublicurl("SYNCADMIN_SITE_URL", allow_http=DEBUG)

REDIS_URL = envstr("REDIS_URL", "redis://127.0.0.1:6379/0")
RQ_QUEUES = rq_queues(REDIS_URL, 3600)
RQ = {"WORKER_CLASS": "tracking.workers.Worker"}
# A long EWS or Graph sync fetches its next page in a forked child while a page is decided and committed
# (tracking/sources/fetchahead.py, docs/performance.md B2); 0 fetches every page in the scanning process.
SYNCADMIN_FETCH_AHEAD = envbool("SYNCADMIN_FETCH_AHEAD", True)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
# One date format everywhere, by language (syncadmin/formats/<lang>/formats.py): en 3 Dec 2026, 20:54;
# de 03.12.2026 20:54.
FORMAT_MODULE_PATH = ["syncadmin.formats"]

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(BASE_DIR / "var" / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # serve from the app directories too, so `make run` needs no collectstatic

# No request body may be larger than this (the proxy in front should refuse the same: docs/deployment.md);
# larger ones get 413 unread, before anything is spooled to the temp folder.
MAX_REQUEST_BYTES = envint("MAX_REQUEST_MB", 12, minimum=1) * 1024 * 1024
# Explain accepts pasted or uploaded messages up to 10 MB; the form says so above that.
DATA_UPLOAD_MAX_MEMORY_SIZE = 11 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 11 * 1024 * 1024
# The most a mail server's answer may hold (one EWS or Graph response); larger ones are refused unread.
SOURCE_MAX_RESPONSE_BYTES = envint("SOURCE_MAX_RESPONSE_MB", 50, minimum=1) * 1024 * 1024
# The most Exchange Server mailboxes `manage.py ews_stream` holds a streaming connection for (a thread and
# an HTTPS connection each); the others are polled only (docs/push-ews.md).
EWS_STREAM_MAX_MAILBOXES = envint("EWS_STREAM_MAX_MAILBOXES", 500, minimum=1)

# Sign-in throttling (django-axes): after AXES_FAILURE_LIMIT wrong passwords for one user name from one
# address, that pair is refused for AXES_COOLOFF_MINUTES, the right password included; other user names
# and other addresses are unaffected. `manage.py axes_reset` (or axes_reset_username NAME) unlocks.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = envint("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=envint("AXES_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# Not verbose: it would log a start-up line on stderr for every manage.py command; lockouts still log.
AXES_VERBOSE = False

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "web-home"
LOGOUT_REDIRECT_URL = "login"

# People (issue 15): local accounts, invitations and password resets. A set-password link (invitation or
# reset) is good once and for 72 hours; links in mail start with SITE_URL (default: the first
# CSRF_TRUSTED_ORIGINS entry, else the address the admin's browser used). LOCAL_LOGIN=0 leaves only the
# identity provider (superusers can still sign in with a password at /admin/, as break-glass).
PASSWORD_RESET_TIMEOUT = 72 * 3600
SITE_URL = envstr("SITE_URL", CSRF_TRUSTED_ORIGINS[0] if CSRF_TRUSTED_ORIGINS else "")
LOCAL_LOGIN = envbool("LOCAL_LOGIN", True)
# OpenID Connect sign-in (syncadmin/oidc.py, on mozilla-django-oidc); OIDC_ISSUER turns it on.
OIDC_ISSUER = envstr("OIDC_ISSUER", "").strip()
OIDC_ENABLED = bool(OIDC_ISSUER)
OIDC_PROVIDER_NAME = envstr("OIDC_PROVIDER_NAME", "Microsoft")
OIDC_ROLES_CLAIM = envstr("OIDC_ROLES_CLAIM", "roles")
OIDC_ADMIN_ROLES = [r.strip() for r in envstr("OIDC_ADMIN_ROLES", "SyncAdmin.Admin").split(",") if r.strip()]
OIDC_AUDITOR_ROLES = [
    r.strip() for r in envstr("OIDC_AUDITOR_ROLES", "SyncAdmin.Auditor").split(",") if r.strip()
]
OIDC_CREATE_USERS = envbool("OIDC_CREATE_USERS", False)
OIDC_RP_CLIENT_ID = envstr("OIDC_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = envsecret("OIDC_CLIENT_SECRET") or ""
OIDC_VERIFY_SSL: bool | str = envstr("OIDC_CA_BUNDLE", "") or True
if OIDC_ENABLED:
    if not OIDC_RP_CLIENT_ID or not OIDC_RP_CLIENT_SECRET:
        raise ImproperlyConfigured(
            "OIDC_ISSUER is set: OIDC_CLIENT_ID and OIDC_CLIENT_SECRET are required too"
        )
    if isinstance(OIDC_VERIFY_SSL, str) and not Path(OIDC_VERIFY_SSL).is_file():
        raise ImproperlyConfigured(f"OIDC_CA_BUNDLE={OIDC_VERIFY_SSL!r} is not a file")
    AUTHENTICATION_BACKENDS.insert(1, "syncadmin.oidc.ProviderBackend")
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_RP_SCOPES = "openid email profile"
OIDC_USE_PKCE = True
OIDC_TIMEOUT = 10
AUTHENTICATION_BACKENDS[-1] = "syncadmin.web.backends.LocalPasswordBackend"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
}
