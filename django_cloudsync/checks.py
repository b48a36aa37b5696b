"""System checks: every misconfiguration a site can make, reported at start-up with an id.

Errors (``django_cloudsync.E0xx``) stop ``runserver`` and ``migrate``; warnings
(``django_cloudsync.W0xx``) are printed. Each message says what to do; none shows a secret.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks import Warning as CheckWarning
from django.utils.module_loading import import_string

from . import conf, dialect, errors
from .crypto import parse_key

_MIDDLEWARE = "django_cloudsync.middleware.CloudSyncMiddleware"
_AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


@register(Tags.security)
def check_encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    keys = conf.encryption_keys()
    if not keys:
        return [
            Error(
                "CLOUDSYNC_ENCRYPTION_KEYS is not set: CloudSync tokens cannot be stored.",
                hint="Generate one with `manage.py cloudsync_generate_key` and read it from the environment.",
                id="django_cloudsync.E001",
            )
        ]
    messages: list[CheckMessage] = []
    for position, key in enumerate(keys):
        try:
            parse_key(key)
        except errors.ConfigurationError as exc:
            messages.append(
                Error(
                    f"CLOUDSYNC_ENCRYPTION_KEYS[{position}] is malformed: {exc.message}.",
                    hint="Each key is 32 random bytes in URL-safe base64 (44 characters).",
                    id="django_cloudsync.E002",
                )
            )
    if not messages and any(key.strip() == str(settings.SECRET_KEY).strip() for key in keys):
        messages.append(
            Error(
                "A CLOUDSYNC_ENCRYPTION_KEYS key is the SECRET_KEY.",
                hint="Use a key of its own, so that neither secret exposes the other.",
                id="django_cloudsync.E003",
            )
        )
    return messages


@register()
def check_installed_apps(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    missing = [
        app for app in ("allauth", "allauth.account", "allauth.socialaccount") if not apps.is_installed(app)
    ]
    if not missing:
        return []
    return [
        Error(
            f"django-cloudsync needs {', '.join(missing)} in INSTALLED_APPS.",
            hint="Add allauth, allauth.account and allauth.socialaccount next to django_cloudsync.",
            id="django_cloudsync.E004",
        )
    ]


@register()
def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    middleware = _resolved_middleware()
    if _MIDDLEWARE not in middleware:
        return [
            CheckWarning(
                "CloudSyncMiddleware is not in MIDDLEWARE: request.user.cloudsync is not available.",
                hint=f"Add '{_MIDDLEWARE}' after '{_AUTH_MIDDLEWARE}', or use "
                "django_cloudsync.client_for(user) instead.",
                id="django_cloudsync.W001",
            )
        ]
    if _AUTH_MIDDLEWARE not in middleware or middleware.index(_MIDDLEWARE) < middleware.index(
        _AUTH_MIDDLEWARE
    ):
        return [
            Error(
                "CloudSyncMiddleware must come after AuthenticationMiddleware.",
                hint="It wraps request.user, which AuthenticationMiddleware sets.",
                id="django_cloudsync.E005",
            )
        ]
    return []


@register(Tags.security)
def check_provider(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    provider = conf.provider_settings()
    messages: list[CheckMessage] = []
    if getattr(settings, "SOCIALACCOUNT_STORE_TOKENS", False):
        messages.append(
            CheckWarning(
                "SOCIALACCOUNT_STORE_TOKENS is on: allauth keeps its own copy of every token.",
                hint="django-cloudsync stores the tokens encrypted; set SOCIALACCOUNT_STORE_TOKENS = False.",
                id="django_cloudsync.W002",
            )
        )
    if not conf.offline_access():
        messages.append(
            CheckWarning(
                "OFFLINE_ACCESS is off: CloudSync issues no refresh token, and access ends "
                "when the first access token expires.",
                hint="Remove SOCIALACCOUNT_PROVIDERS['cloudsync']['OFFLINE_ACCESS'] unless you mean it.",
                id="django_cloudsync.W003",
            )
        )
    if provider.get("OAUTH_PKCE_ENABLED") is False:
        messages.append(
            CheckWarning(
                "PKCE is off for CloudSync (OAUTH_PKCE_ENABLED = False).",
                hint="PKCE stops authorization code injection (RFC 9700 §2.1.1); leave it on.",
                id="django_cloudsync.W004",
            )
        )
    apps_setting = provider.get("APPS") or []
    if not apps_setting:
        messages.append(
            CheckWarning(
                "SOCIALACCOUNT_PROVIDERS['cloudsync'] has no APPS.",
                hint="Add {'client_id': ..., 'secret': ...} there, or a CloudSync SocialApp in the admin.",
                id="django_cloudsync.W005",
            )
        )
    elif any(not app.get("client_id") or not app.get("secret") for app in apps_setting):
        messages.append(
            Error(
                "A CloudSync app in SOCIALACCOUNT_PROVIDERS['cloudsync']['APPS'] has no client_id or secret.",
                hint="CloudSync's token endpoint needs both.",
                id="django_cloudsync.E006",
            )
        )
    if not settings.DEBUG:
        for name, url in (("AUTH_URL", conf.auth_url()), ("API_URL", conf.api_url())):
            parts = urlsplit(url)
            if parts.scheme != "https" and parts.hostname not in _LOOPBACK_HOSTS:
                messages.append(
                    Error(
                        f"SOCIALACCOUNT_PROVIDERS['cloudsync']['{name}'] is not HTTPS.",
                        hint="Tokens and the client secret would travel in clear text.",
                        id="django_cloudsync.E007",
                    )
                )
    return messages


@register(Tags.security)
def check_api_key(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    key = conf.api_key()
    if key is None:
        return []
    environment = dialect.environment_of(key, dialect.API_KEY_PREFIXES)
    if environment is None:
        return [
            Error(
                "CLOUDSYNC_API_KEY does not start with sk_live_ or sk_test_.",
                hint="Copy the key from CloudSync's dashboard, whole.",
                id="django_cloudsync.E008",
            )
        ]
    if environment == dialect.LIVE and settings.DEBUG:
        return [
            CheckWarning(
                "CLOUDSYNC_API_KEY is a live key and DEBUG is on.",
                hint="Use an sk_test_ key in development.",
                id="django_cloudsync.W006",
            )
        ]
    return []


def _resolved_middleware() -> list[str]:
    # A site may list a subclass; compare by class where the path imports.
    resolved = []
    for path in settings.MIDDLEWARE:
        try:
            cls = import_string(path)
        except ImportError:
            resolved.append(path)
            continue
        from .middleware import CloudSyncMiddleware

        if isinstance(cls, type) and issubclass(cls, CloudSyncMiddleware):
            resolved.append(_MIDDLEWARE)
        else:
            resolved.append(path)
    return resolved
