"""Settings of a tiny production-like site using django-cloudsync as installed from the wheel.

tests/test_packaging.py copies this directory out of the checkout and runs it with a virtualenv
that has only the wheel and its dependencies, so that nothing here can come from the source tree.
It is configured the way a deployment would be (DEBUG off, HTTPS only, every ``check --deploy``
setting), so that the checks it runs show what django-cloudsync adds to a clean site: nothing.

``CLOUDSYNC_URL`` points it at a CloudSync (a loopback fake for the sign-in); without it, at an
HTTPS address that is never contacted.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

# Test-only values, long and random-looking enough for check --deploy.
SECRET_KEY = "installed-site-test-only-4f0c9e7b1a2d8e6f3c5b7a9d1e0f2c4b6a8d0e2f4c6b"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
ROOT_URLCONF = "site_urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "django_cloudsync",
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

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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
        "NAME": BASE_DIR / "site.sqlite3",
    }
}

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "static"

# What check --deploy asks of a site served over HTTPS, behind a proxy that terminates TLS.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = True
SECURE_HSTS_SECONDS = 31_536_000
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True

ACCOUNT_EMAIL_VERIFICATION = "none"

CLOUDSYNC_URL = os.environ.get("CLOUDSYNC_URL", "https://cloudsync.invalid")
SOCIALACCOUNT_PROVIDERS = {
    "cloudsync": {
        # The fake CloudSync's default client credentials.
        "APPS": [{"client_id": "fake-client-id", "secret": "fake-client-secret"}],
        "SCOPE": ["workspaces:read"],
        "AUTH_URL": CLOUDSYNC_URL,
        "API_URL": CLOUDSYNC_URL,
    }
}
CLOUDSYNC_ENCRYPTION_KEYS = ["aW5zdGFsbGVkLXNpdGUtdGVzdC1rZXktMzJieXRlcyE="]
