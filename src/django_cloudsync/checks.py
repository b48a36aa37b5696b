"""System checks: every misconfiguration a site can make, reported at start-up with an id.

Errors (``django_cloudsync.E0xx``) stop ``runserver`` and ``migrate``; warnings
(``django_cloudsync.W0xx``) are printed. Each message says what to do; none shows a secret.
"""

from __future__ import annotations

import ipaddress
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
_LOOPBACK_HOSTS = {"localhost", "localhost."}


@register(Tags.security)
def check_encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    keys = conf.encryption_keys()
    if not keys:
        return [
            Error(
                "CLOUDSYNC_ENCRYPTION_KEYS is not set: CloudSync tokens cannot be stored.",
                hint="Run `manage.py cloudsync_generate_key` and set CLOUDSYNC_ENCRYPTION_KEYS = [that key], "
                "read from the environment (keep it out of the repository).",
                id="django_cloudsync.E001",
            )
        ]
    messages: list[CheckMessage] = []
    site_secrets = _site_secret_keys()
    for position, key in enumerate(keys):
        try:
            raw = parse_key(key)
        except errors.ConfigurationError as exc:
            messages.append(
                Error(
                    f"CLOUDSYNC_ENCRYPTION_KEYS[{position}] is malformed: {exc.message}.",
                    hint="Each key is 32 random bytes in URL-safe base64 (44 characters), as "
                    "`manage.py cloudsync_generate_key` prints them.",
                    id="django_cloudsync.E002",
                )
            )
            continue
        if raw in site_secrets:
            messages.append(
                Error(
                    f"CLOUDSYNC_ENCRYPTION_KEYS[{position}] is the SECRET_KEY "
                    "(or one of SECRET_KEY_FALLBACKS).",
                    hint="Put a key of its own first (`manage.py cloudsync_generate_key`), so that neither "
                    "secret exposes the other; if tokens are stored under this one, keep it second, run "
                    "`manage.py cloudsync_rotate_keys --skip-checks`, then remove it.",
                    id="django_cloudsync.E003",
                )
            )
    return messages


def _site_secret_keys() -> set[bytes]:
    """The raw key bytes of SECRET_KEY and SECRET_KEY_FALLBACKS, for those that parse as keys.

    Compared as bytes, not text: the same key with other padding or whitespace is the same key.
    A secret that does not parse as a key cannot be equal to one that does.
    """
    fallbacks = getattr(settings, "SECRET_KEY_FALLBACKS", None) or []
    secrets = [getattr(settings, "SECRET_KEY", None), *fallbacks]
    found: set[bytes] = set()
    for secret in secrets:
        if isinstance(secret, (str, bytes)) and secret:
            try:
                found.add(parse_key(secret))
            except errors.ConfigurationError:
                continue
    return found


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
    environment = provider.get("ENVIRONMENT")
    if environment is not None and environment not in (dialect.LIVE, dialect.TEST):
        messages.append(
            Error(
                "SOCIALACCOUNT_PROVIDERS['cloudsync']['ENVIRONMENT'] must be 'live' or 'test'.",
                hint="Leave it out to infer it from AUTH_URL (live only for CloudSync's own server).",
                id="django_cloudsync.E009",
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
    if "OAUTH_PKCE_ENABLED" in provider and not provider["OAUTH_PKCE_ENABLED"]:
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
                hint="Add {'client_id': ..., 'secret': ...} there. If a CloudSync SocialApp in the admin "
                "holds them instead, add 'django_cloudsync.W005' to SILENCED_SYSTEM_CHECKS.",
                id="django_cloudsync.W005",
            )
        )
    elif not _apps_are_complete(apps_setting):
        messages.append(
            Error(
                "A CloudSync app in SOCIALACCOUNT_PROVIDERS['cloudsync']['APPS'] has no client_id or secret.",
                hint="APPS is a list of {'client_id': ..., 'secret': ...}: CloudSync's token endpoint "
                "needs both.",
                id="django_cloudsync.E006",
            )
        )
    messages += _check_app_redirect_uris(provider.get("APP_REDIRECT_URIS"))
    if not settings.DEBUG:
        for name, url in (("AUTH_URL", conf.auth_url()), ("API_URL", conf.api_url())):
            if not _is_https_or_loopback(url):
                messages.append(
                    Error(
                        f"SOCIALACCOUNT_PROVIDERS['cloudsync']['{name}'] is not HTTPS.",
                        hint="Tokens and the client secret would travel in clear text. Plain http is "
                        "allowed only for a loopback address, or with DEBUG on.",
                        id="django_cloudsync.E007",
                    )
                )
    return messages


def _check_app_redirect_uris(value: Any) -> list[CheckMessage]:
    if not value:
        return []
    setting = "SOCIALACCOUNT_PROVIDERS['cloudsync']['APP_REDIRECT_URIS']"
    hint = (
        "Use the redirect URIs of your apps' authorization requests (RFC 8252 §7): a claimed "
        "https URI (best), a private-use scheme named after a domain you own "
        "(com.example.app:/callback), or http on a loopback address."
    )
    if not isinstance(value, (list, tuple)):
        return [Error(f"{setting} must be a list of URIs.", hint=hint, id="django_cloudsync.E010")]
    messages: list[CheckMessage] = [
        Error(f"{setting}[{position}] is not an app's redirect URI.", hint=hint, id="django_cloudsync.E010")
        for position, uri in enumerate(value)
        if not _is_app_redirect_uri(uri)
    ]
    if not conf.headless_serves_apps():
        messages.append(
            CheckWarning(
                f"{setting} is set, but allauth.headless does not serve apps: none can sign in with a code.",
                hint="Install allauth.headless with 'app' in HEADLESS_CLIENTS, or remove APP_REDIRECT_URIS.",
                id="django_cloudsync.W007",
            )
        )
    return messages


def _is_app_redirect_uri(uri: Any) -> bool:
    if not dialect.is_redirect_uri(uri):
        return False
    # A private-use scheme, https, or plain http only on a loopback address (RFC 8252 §8.3).
    return urlsplit(uri).scheme not in ("http", "https") or _is_https_or_loopback(uri)


def _apps_are_complete(apps_setting: Any) -> bool:
    # A dict where a list of dicts belongs is a common slip; report it, do not crash on it.
    if not isinstance(apps_setting, (list, tuple)):
        return False
    return all(isinstance(app, dict) and app.get("client_id") and app.get("secret") for app in apps_setting)


def _is_https_or_loopback(url: str) -> bool:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    if parts.scheme == "https":
        return bool(host)
    if parts.scheme != "http":
        return False
    if host in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback  # all of 127.0.0.0/8, as the client allows
    except ValueError:
        return False


@register(Tags.security, deploy=True)
def check_app_token_authentication(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``check --deploy``: an app's access token proves whose it is, not which app it was issued to.

    Like Django's own ``DEFAULT_AUTO_FIELD`` warning, it stays until the site decides: either
    value of ``TOKEN_AUTHENTICATION`` silences it.
    """
    if "TOKEN_AUTHENTICATION" in conf.provider_settings() or not conf.headless_serves_apps():
        return []
    return [
        CheckWarning(
            "Apps may sign in with any CloudSync access token of a user, whichever application it "
            "was issued to (CloudSync has no token introspection).",
            hint="Set SOCIALACCOUNT_PROVIDERS['cloudsync']['TOKEN_AUTHENTICATION'] = False and let "
            "your apps sign in with a code (APP_REDIRECT_URIS), or set it to True to accept this.",
            id="django_cloudsync.W008",
        )
    ]


@register(Tags.security)
def check_api_key(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    key = conf.api_key()
    if key is None:
        return []
    environment = dialect.environment_of(key, dialect.API_KEY_PREFIXES) if isinstance(key, str) else None
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
    """MIDDLEWARE with subclasses of ours and of AuthenticationMiddleware named as their base."""
    from django.contrib.auth.middleware import AuthenticationMiddleware

    from .middleware import CloudSyncMiddleware

    resolved = []
    for path in settings.MIDDLEWARE:
        try:
            cls = import_string(path)
        except ImportError:
            # Django reports an unimportable middleware itself; compare it by its path.
            resolved.append(path)
            continue
        if isinstance(cls, type) and issubclass(cls, CloudSyncMiddleware):
            resolved.append(_MIDDLEWARE)
        elif isinstance(cls, type) and issubclass(cls, AuthenticationMiddleware):
            resolved.append(_AUTH_MIDDLEWARE)
        else:
            resolved.append(path)
    return resolved


@register()
def check_sign_up_mail(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E011: allauth mails every new user a verification link, through an SMTP server nobody set up.

    allauth's default ``ACCOUNT_EMAIL_VERIFICATION`` is ``"optional"``, and Django's default
    ``EMAIL_BACKEND`` is SMTP on ``localhost:25``: on a new site, the first sign-in of every user
    would end in ``ConnectionRefusedError``. Self-contained: it reads allauth's own settings.
    """
    from django.conf import global_settings

    if not (apps.is_installed("allauth.account") and apps.is_installed("allauth.socialaccount")):
        return []  # E004
    from allauth.account import app_settings as account_settings
    from allauth.socialaccount import app_settings as socialaccount_settings

    # A social sign-up verifies by SOCIALACCOUNT_EMAIL_VERIFICATION, which defaults to the account's.
    setting, verification = "SOCIALACCOUNT_EMAIL_VERIFICATION", socialaccount_settings.EMAIL_VERIFICATION
    if verification is None:
        setting, verification = "ACCOUNT_EMAIL_VERIFICATION", account_settings.EMAIL_VERIFICATION
    method = account_settings.EmailVerificationMethod(verification)
    if method == account_settings.EmailVerificationMethod.NONE:
        return []
    provider = getattr(settings, "SOCIALACCOUNT_PROVIDERS", None) or {}
    if (provider.get("cloudsync") or {}).get("VERIFIED_EMAIL") is True:
        return []  # allauth trusts CloudSync's address and sends nothing
    mail_left_at_defaults = (
        settings.EMAIL_BACKEND == global_settings.EMAIL_BACKEND
        and settings.EMAIL_HOST == global_settings.EMAIL_HOST
        and settings.EMAIL_PORT == global_settings.EMAIL_PORT
    )
    if not mail_left_at_defaults:
        return []
    return [
        Error(
            f"allauth mails a verification link to every new user ({setting} is "
            f"{method.value!r}), but EMAIL_BACKEND is Django's default SMTP backend on "
            "localhost:25: without a mail server there, every first sign-in fails.",
            hint=f'Set {setting} = "none" (CloudSync already knows who the user is), '
            "or configure mail (EMAIL_BACKEND and EMAIL_HOST, or "
            'EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend" in development). '
            "If a mail server does listen on localhost:25, add 'django_cloudsync.E011' to "
            "SILENCED_SYSTEM_CHECKS.",
            id="django_cloudsync.E011",
        )
    ]
