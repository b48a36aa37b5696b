"""Settings for django-cloudsync's own test suite.

SQLite by default. ``CLOUDSYNC_TEST_POSTGRES_URL`` (``postgres://user@host:port/dbname``) adds a
``postgres`` database alias, and ``CLOUDSYNC_TEST_MYSQL_URL`` (``mysql://user@host:port/dbname``,
MariaDB or MySQL, with the ``mysql`` extra's driver) a ``mysql`` one, for the tests that run on a
database server (the ``on_server_database`` fixture); without them those tests skip.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import django

from testsupport.routers import server_database

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
USE_TZ = True
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# pytest-django's live_server (tests/test_mobile_app.py) serves static files under this prefix.
STATIC_URL = "/static/"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.headless",
    "django_cloudsync",
]

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

# A file, not :memory:, so that tests can read the raw database for plaintext tokens and
# worker processes can share it; one per test run, so that parallel runs do not collide.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(tempfile.gettempdir(), "django-cloudsync-tests.sqlite3"),
        "TEST": {"NAME": os.path.join(tempfile.gettempdir(), f"django-cloudsync-test-{os.getpid()}.sqlite3")},
        "OPTIONS": {"timeout": 30},
    },
}


# One test database per run on each server, so that parallel runs (tox, a second terminal) do not
# collide.
_TEST_NAME = f"test_cloudsync_{os.getpid()}"
if _postgres_url := os.environ.get("CLOUDSYNC_TEST_POSTGRES_URL"):
    DATABASES["postgres"] = {
        **server_database(_postgres_url, "django.db.backends.postgresql"),
        "TEST": {"NAME": _TEST_NAME},
    }
if _mysql_url := os.environ.get("CLOUDSYNC_TEST_MYSQL_URL"):
    DATABASES["mysql"] = {
        **server_database(_mysql_url, "django.db.backends.mysql"),
        "TEST": {"NAME": _TEST_NAME, "CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
    }

DATABASE_ROUTERS = ["testsupport.routers.SelectableDatabaseRouter"]

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Django 6.1 replaces EMAIL_BACKEND with MAILERS and warns (an error in the tests) on the old one.
if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
else:
    EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

ACCOUNT_EMAIL_VERIFICATION = "none"

# allauth's headless API beside the regular views (HEADLESS_ONLY stays off): the "browser" client
# for an SPA's provider redirect, the "app" client for a mobile app's provider token.
HEADLESS_CLIENTS = ("browser", "app")
HEADLESS_FRONTEND_URLS = {"socialaccount_login_error": "/spa/login-error"}

SOCIALACCOUNT_PROVIDERS = {
    "cloudsync": {
        "APPS": [{"client_id": "test-client-id", "secret": "test-client-secret"}],
        "SCOPE": ["workspaces:read"],
        "AUTH_URL": "http://127.0.0.1:9",
        "API_URL": "http://127.0.0.1:9",
        # The tests sign apps in both ways: with a code (the site's own apps' redirect URIs, a
        # private-use scheme and a claimed URI) and with an access token.
        "TOKEN_AUTHENTICATION": True,
        "APP_REDIRECT_URIS": [
            "com.example.cloudsync:/oauth2redirect",
            "https://app.example.com/oauth/cloudsync",
        ],
    }
}

# Two fixed test keys: the first encrypts, both decrypt.
CLOUDSYNC_ENCRYPTION_KEYS = [
    "xCHPAMGPkhXrXVp3vGuk4K6Fm-3vQIz6qKdk1Ej2bL0=",
    "g7f3n6m0z8dzuXg3DnDnS2R6c5z1C3o6r2D8o0w1F2E=",
]
CLOUDSYNC_TIMEOUT = (2.0, 2.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django_cloudsync": {"level": "DEBUG"}},
}

# The DRF and django-ninja glue (django_cloudsync.contrib) is tested against the real packages,
# which the `test` extra installs; a checkout without them still runs the rest of the suite.
API_FRAMEWORKS = [name for name in ("rest_framework", "ninja") if importlib.util.find_spec(name)]
if "rest_framework" in API_FRAMEWORKS:
    INSTALLED_APPS += ["rest_framework", "rest_framework.authtoken"]
    REST_FRAMEWORK = {
        "EXCEPTION_HANDLER": "django_cloudsync.contrib.drf.exception_handler",
        "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    }
    # allauth headless's JWTTokenAuthentication (on the test API views) needs a signing key even
    # while the session-token strategy is the one in use; a fresh one per run.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    HEADLESS_JWT_PRIVATE_KEY = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
