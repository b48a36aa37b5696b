"""The provider's settings, ``SOCIALACCOUNT_PROVIDERS["cloudsync"]``, one registered check per concern.

:func:`check_provider` runs them all at once (it is not registered itself: each concern is).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks import Warning as CheckWarning

from .. import conf, dialect, wire

_SETTING = "SOCIALACCOUNT_PROVIDERS['cloudsync']"


@register(Tags.security)
def check_token_storage(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W002: allauth must not keep a plaintext copy of the tokens."""
    if not getattr(settings, "SOCIALACCOUNT_STORE_TOKENS", False):
        return []
    return [
        CheckWarning(
            "SOCIALACCOUNT_STORE_TOKENS is on: allauth saves every provider's tokens unencrypted "
            "in its SocialToken table. For CloudSync accounts it saves an empty SocialToken: "
            "django-cloudsync keeps their tokens, encrypted, in its own table only.",
            hint=(
                "Set SOCIALACCOUNT_STORE_TOKENS = False unless another provider needs it; read "
                "CloudSync tokens through request.user.cloudsync or client_for(), never SocialToken."
            ),
            id="django_cloudsync.W002",
        )
    ]


@register(Tags.security)
def check_environment(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E009: ``ENVIRONMENT`` is ``"live"``, ``"test"`` or unset."""
    environment = conf.environment_setting()
    if environment is None or environment in (dialect.LIVE, dialect.TEST):
        return []
    return [
        Error(
            f"{_SETTING}['ENVIRONMENT'] must be 'live' or 'test'.",
            hint="Leave it out to infer it from AUTH_URL (live only for CloudSync's own server).",
            id="django_cloudsync.E009",
        )
    ]


@register(Tags.security)
def check_offline_access(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W003: without ``offline_access`` there is no refresh token."""
    if conf.offline_access():
        return []
    return [
        CheckWarning(
            "OFFLINE_ACCESS is off: CloudSync issues no refresh token, and access ends "
            "when the first access token expires.",
            hint=f"Remove {_SETTING}['OFFLINE_ACCESS'] unless you mean it.",
            id="django_cloudsync.W003",
        )
    ]


@register(Tags.security)
def check_pkce(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W004: PKCE stays on."""
    provider = conf.provider_settings()
    if "OAUTH_PKCE_ENABLED" not in provider or provider["OAUTH_PKCE_ENABLED"]:
        return []
    return [
        CheckWarning(
            "PKCE is off for CloudSync (OAUTH_PKCE_ENABLED = False).",
            hint="PKCE stops authorization code injection (RFC 9700 §2.1.1); leave it on.",
            id="django_cloudsync.W004",
        )
    ]


@register(Tags.security)
def check_apps(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W005: a client app is configured; E006: each has a client id and a secret."""
    apps_setting = conf.provider_settings().get("APPS") or []
    if not apps_setting:
        return [
            CheckWarning(
                f"{_SETTING} has no APPS.",
                hint="Add {'client_id': ..., 'secret': ...} there. If a CloudSync SocialApp in the admin "
                "holds them instead, add 'django_cloudsync.W005' to SILENCED_SYSTEM_CHECKS.",
                id="django_cloudsync.W005",
            )
        ]
    if _apps_are_complete(apps_setting):
        return []
    return [
        Error(
            f"A CloudSync app in {_SETTING}['APPS'] has no client_id or secret.",
            hint="APPS is a list of {'client_id': ..., 'secret': ...}: CloudSync's token endpoint "
            "needs both.",
            id="django_cloudsync.E006",
        )
    ]


@register(Tags.security)
def check_app_redirect_uris(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E010: ``APP_REDIRECT_URIS`` lists apps' redirect URIs; W007: and something serves apps."""
    value = conf.provider_settings().get("APP_REDIRECT_URIS")
    if not value:
        return []
    setting = f"{_SETTING}['APP_REDIRECT_URIS']"
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


@register(Tags.security)
def check_urls(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E007: ``AUTH_URL`` and ``API_URL`` are HTTPS (or loopback, or DEBUG is on)."""
    if settings.DEBUG:
        return []
    return [
        Error(
            f"{_SETTING}['{name}'] is not HTTPS.",
            hint="Tokens and the client secret would travel in clear text. Plain http is "
            "allowed only for a loopback address, or with DEBUG on.",
            id="django_cloudsync.E007",
        )
        for name, url in (("AUTH_URL", conf.auth_url()), ("API_URL", conf.api_url()))
        if not wire.is_https_or_loopback(url)
    ]


@register(Tags.security, deploy=True)
def check_app_token_authentication(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``check --deploy``: an app's access token proves whose it is, not which app it was issued to.

    Like Django's own ``DEFAULT_AUTO_FIELD`` warning, it stays until the site decides: either
    value of ``TOKEN_AUTHENTICATION`` silences it.
    """
    if conf.token_authentication_decided() or not conf.headless_serves_apps():
        return []
    return [
        CheckWarning(
            "Apps may sign in with any CloudSync access token of a user, whichever application it "
            "was issued to (CloudSync has no token introspection).",
            hint=f"Set {_SETTING}['TOKEN_AUTHENTICATION'] = False and let "
            "your apps sign in with a code (APP_REDIRECT_URIS), or set it to True to accept this.",
            id="django_cloudsync.W008",
        )
    ]


#: The provider's concerns, in the order :func:`check_provider` reports them.
PROVIDER_CHECKS = (
    check_token_storage,
    check_environment,
    check_offline_access,
    check_pkce,
    check_apps,
    check_app_redirect_uris,
    check_urls,
)


def check_provider(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every check of the provider's settings at once (W002-W005, W007, E006, E007, E009, E010)."""
    return [message for check in PROVIDER_CHECKS for message in check(app_configs, **kwargs)]


def _is_app_redirect_uri(uri: Any) -> bool:
    if not dialect.is_redirect_uri(uri):
        return False
    # A private-use scheme, https, or plain http only on a loopback address (RFC 8252 §8.3).
    return urlsplit(uri).scheme not in ("http", "https") or wire.is_https_or_loopback(uri)


def _apps_are_complete(apps_setting: Any) -> bool:
    # A dict where a list of dicts belongs is a common slip; report it, do not crash on it.
    if not isinstance(apps_setting, (list, tuple)):
        return False
    return all(isinstance(app, dict) and app.get("client_id") and app.get("secret") for app in apps_setting)
