"""A small site that signs in with CloudSync and lists the user's workspaces.

With no environment variables it talks to the built-in fake CloudSync, served by the same
``runserver`` under ``/fake-cloudsync/``. Point it at another CloudSync with
``CLOUDSYNC_AUTH_URL``, ``CLOUDSYNC_API_URL``, ``CLOUDSYNC_CLIENT_ID`` and
``CLOUDSYNC_CLIENT_SECRET``.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent

# Development settings: never deploy these.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-example-project-only")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    # allauth's headless API, for the single-page app at /spa/ (and apps).
    "allauth.headless",
    "django_cloudsync",
    "example",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_cloudsync.middleware.CloudSyncMiddleware",
]

ROOT_URLCONF = "example.urls"
WSGI_APPLICATION = "example.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # allauth's and django-cloudsync's templates overridden in the example's layout.
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
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DATABASE", str(BASE_DIR / "db.sqlite3")),
        "OPTIONS": {"timeout": 20},
    }
}
# The soak test runs the example on PostgreSQL: postgres://user@host:port/name
if _postgres_url := os.environ.get("EXAMPLE_POSTGRES_URL"):
    _url = urlsplit(_postgres_url)
    DATABASES["default"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.path.lstrip("/"),
        "USER": _url.username or "postgres",
        "PASSWORD": _url.password or "",
        "HOST": _url.hostname or "127.0.0.1",
        "PORT": str(_url.port or 5432),
    }

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

USE_TZ = True
# Times are shown in UTC, and the pages say so (base.html's footer, "T" in the date formats).
TIME_ZONE = "UTC"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_REDIRECT_URL = "/"
ACCOUNT_LOGOUT_REDIRECT_URL = "/"
ACCOUNT_EMAIL_VERIFICATION = "none"
# Where allauth headless sends the SPA after a failed provider sign-in.
HEADLESS_FRONTEND_URLS = {"socialaccount_login_error": "/spa/"}
# CloudSync is the only way in: allauth offers no password sign-in, sign-up or reset.
SOCIALACCOUNT_ONLY = True

# Where the example site itself runs: the built-in fake CloudSync is served under it.
EXAMPLE_BASE_URL = os.environ.get("EXAMPLE_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
FAKE_CLOUDSYNC_PREFIX = "/fake-cloudsync"
USE_FAKE_CLOUDSYNC = "CLOUDSYNC_AUTH_URL" not in os.environ

_fake_url = EXAMPLE_BASE_URL + FAKE_CLOUDSYNC_PREFIX
SOCIALACCOUNT_PROVIDERS = {
    "cloudsync": {
        "APPS": [
            {
                "client_id": os.environ.get("CLOUDSYNC_CLIENT_ID", "fake-client-id"),
                "secret": os.environ.get("CLOUDSYNC_CLIENT_SECRET", "fake-client-secret"),
            }
        ],
        "SCOPE": ["workspaces:read"],
        "AUTH_URL": os.environ.get("CLOUDSYNC_AUTH_URL", _fake_url),
        "API_URL": os.environ.get("CLOUDSYNC_API_URL", _fake_url),
    }
}

# The key that encrypts stored tokens. This default is for the example only: a real site reads
# its keys from the environment (generate one with `manage.py cloudsync_generate_key`).
CLOUDSYNC_ENCRYPTION_KEYS = [
    os.environ.get("CLOUDSYNC_ENCRYPTION_KEY", "ZXhhbXBsZS1wcm9qZWN0LW9ubHktbm90LXNlY3JldCE="),
]

CLOUDSYNC_TIMEOUT = float(os.environ.get("CLOUDSYNC_TIMEOUT", "10"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_cloudsync": {"handlers": ["console"], "level": "INFO"}},
}
