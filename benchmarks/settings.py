"""Settings of the benchmark site: the test site's shape, on its own databases and fake CloudSync.

The runner (``python -m benchmarks``) fills the environment before Django starts, and worker
processes inherit it:

``CLOUDSYNC_BENCH_DIR``
    a temporary directory; the SQLite database lives in it.
``CLOUDSYNC_BENCH_FAKE_URL``
    the fake CloudSync (authorization server and API) on a loopback port.
``CLOUDSYNC_BENCH_POSTGRES_URL`` and ``CLOUDSYNC_BENCH_POSTGRES_DB``
    the PostgreSQL server and the throwaway database the runner created on it; without them
    there is no ``postgres`` alias and the PostgreSQL rows are skipped.
``CLOUDSYNC_BENCH_MYSQL_URL`` and ``CLOUDSYNC_BENCH_MYSQL_DB``
    the same for MariaDB/MySQL (the ``mysql`` alias).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import django

from testsupport.baseline import PROVIDER_ID as BASELINE_PROVIDER_ID
from testsupport.baseline import provider_settings as baseline_provider_settings
from testsupport.routers import server_database

BENCH_DIR = Path(os.environ.get("CLOUDSYNC_BENCH_DIR") or tempfile.gettempdir())
FAKE_URL = os.environ.get("CLOUDSYNC_BENCH_FAKE_URL", "http://127.0.0.1:9").rstrip("/")
#: The fake CloudSync's well-known test credentials (FakeCloudSync's defaults).
FAKE_CLIENT_ID = "fake-client-id"
FAKE_CLIENT_SECRET = "fake-client-secret"  # noqa: S105

SECRET_KEY = "benchmarks-only-not-secret"  # noqa: S105
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
ROOT_URLCONF = "benchmarks.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "django_cloudsync",
    "testsupport.baseline",
]

# The API frameworks of the per-request cost figure (benchmarks/api.py), when installed.
API_FRAMEWORKS = [name for name in ("rest_framework", "ninja") if importlib.util.find_spec(name)]
if "rest_framework" in API_FRAMEWORKS:
    INSTALLED_APPS += ["rest_framework"]
    REST_FRAMEWORK = {
        "EXCEPTION_HANDLER": "django_cloudsync.contrib.drf.exception_handler",
        "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    }

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_cloudsync.middleware.CloudSyncMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(BENCH_DIR / "benchmarks.sqlite3"),
        "OPTIONS": {"timeout": 30},
        # Persistent, as a production site configures it: a reconnect per request would be
        # noise in the per-request timings.
        "CONN_MAX_AGE": None,
    },
}


_postgres_url = os.environ.get("CLOUDSYNC_BENCH_POSTGRES_URL")
_postgres_db = os.environ.get("CLOUDSYNC_BENCH_POSTGRES_DB")
if _postgres_url and _postgres_db:
    DATABASES["postgres"] = server_database(_postgres_url, "django.db.backends.postgresql", name=_postgres_db)
_mysql_url = os.environ.get("CLOUDSYNC_BENCH_MYSQL_URL")
_mysql_db = os.environ.get("CLOUDSYNC_BENCH_MYSQL_DB")
if _mysql_url and _mysql_db:
    DATABASES["mysql"] = server_database(_mysql_url, "django.db.backends.mysql", name=_mysql_db)

DATABASE_ROUTERS = ["testsupport.routers.SelectableDatabaseRouter"]

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Django 6.1 replaces EMAIL_BACKEND with MAILERS and warns (an error in the tests) on the old one.
if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
else:
    EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
ACCOUNT_EMAIL_VERIFICATION = "none"

SOCIALACCOUNT_PROVIDERS = {
    "cloudsync": {
        "APPS": [{"client_id": FAKE_CLIENT_ID, "secret": FAKE_CLIENT_SECRET}],
        "SCOPE": ["workspaces:read"],
        "AUTH_URL": FAKE_URL,
        "API_URL": FAKE_URL,
    },
    BASELINE_PROVIDER_ID: baseline_provider_settings(FAKE_URL, FAKE_CLIENT_ID, FAKE_CLIENT_SECRET),
}

# A fixed benchmark key (the key rotation benchmark brings two more of its own).
CLOUDSYNC_ENCRYPTION_KEYS = ["YmVuY2htYXJrcy1vbmx5LW5vdC1hLXNlY3JldC1rZXk="]
CLOUDSYNC_TIMEOUT = (5.0, 10.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "level": "ERROR"}},
    "loggers": {
        "django_cloudsync": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
        # 50 threads share one pool of 32 connections in the refresh race: urllib3 says so.
        "urllib3": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
    },
}
