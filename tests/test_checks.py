"""System checks: each misconfiguration is reported with its id, and no message shows a secret."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import StringIO
from typing import Any

import django
import pytest
from django.apps import apps
from django.conf import global_settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.core.checks import CheckMessage, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from django_cloudsync import checks, conf, errors
from django_cloudsync.crypto import generate_key
from django_cloudsync.middleware import CloudSyncMiddleware

KEY = "xCHPAMGPkhXrXVp3vGuk4K6Fm-3vQIz6qKdk1Ej2bL0="
OTHER_KEY = "g7f3n6m0z8dzuXg3DnDnS2R6c5z1C3o6r2D8o0w1F2E="
CLIENT_SECRET = "client-secret-9f8e7d6c5b4a"
MIDDLEWARE = "django_cloudsync.middleware.CloudSyncMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"


class SiteCloudSyncMiddleware(CloudSyncMiddleware):
    """A site's own subclass of the middleware, as a check must accept it."""


class SiteAuthenticationMiddleware(AuthenticationMiddleware):
    """A site's own subclass of Django's authentication middleware."""


def ids(messages: list[CheckMessage]) -> list[str]:
    return [message.id for message in messages if message.id and message.id.startswith("django_cloudsync.")]


def hint_of(message: CheckMessage) -> str:
    """The message's hint, which a check that tells the fix always gives."""
    assert message.hint is not None, message
    return message.hint


def text_of(messages: list[CheckMessage]) -> str:
    return "\n".join(f"{message} {message.msg} {message.hint}" for message in messages)


def all_cloudsync_messages() -> list[CheckMessage]:
    # databases=[]: the static checks only, on every Django (6.1 runs the model checks against
    # every database by default, which these tests have no access to).
    messages = run_checks(databases=[])
    return [message for message in messages if (message.id or "").startswith("django_cloudsync.")]


@pytest.fixture
def provider(settings: Any) -> dict[str, Any]:
    """A copy of SOCIALACCOUNT_PROVIDERS['cloudsync'] that the test may change."""
    providers = copy.deepcopy(settings.SOCIALACCOUNT_PROVIDERS)
    providers["cloudsync"]["APPS"] = [{"client_id": "site-client", "secret": CLIENT_SECRET}]
    settings.SOCIALACCOUNT_PROVIDERS = providers
    provider: dict[str, Any] = providers["cloudsync"]
    return provider


@contextmanager
def installed_apps_without(*names: str) -> Iterator[None]:
    remaining = [config.name for config in apps.get_app_configs() if config.name not in names]
    apps.set_available_apps(remaining)
    try:
        yield
    finally:
        apps.unset_available_apps()


def test_the_test_settings_pass_every_check(provider: Any) -> None:
    assert all_cloudsync_messages() == []


# Encryption keys.


@pytest.mark.parametrize("value", [None, [], "", ()])
def test_no_encryption_key_is_e001(settings: Any, value: Any) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = value

    assert ids(checks.check_encryption_keys()) == ["django_cloudsync.E001"]


def test_a_malformed_key_is_e002_naming_its_position_not_its_value(settings: Any) -> None:
    malformed = KEY[:-8] + "!!!!!!!="
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [KEY, malformed]

    messages = checks.check_encryption_keys()

    assert ids(messages) == ["django_cloudsync.E002"]
    assert "CLOUDSYNC_ENCRYPTION_KEYS[1]" in messages[0].msg
    assert malformed not in text_of(messages)
    assert KEY not in text_of(messages)


@pytest.mark.parametrize(
    "malformed",
    ["too-short", KEY.rstrip("="), KEY + KEY, 12345, b"\xff\xfe"],
    ids=["too short", "unpadded", "64 bytes", "a number", "bytes that are not ascii"],
)
def test_every_kind_of_malformed_key_is_e002(settings: Any, malformed: Any) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [malformed]

    messages = checks.check_encryption_keys()

    assert ids(messages) == ["django_cloudsync.E002"]
    assert str(malformed) not in text_of(messages)


def test_a_key_equal_to_the_secret_key_is_e003(settings: Any) -> None:
    settings.SECRET_KEY = OTHER_KEY
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [KEY, f" {OTHER_KEY}\n"]

    messages = checks.check_encryption_keys()

    assert ids(messages) == ["django_cloudsync.E003"]
    assert "CLOUDSYNC_ENCRYPTION_KEYS[1]" in messages[0].msg
    assert OTHER_KEY not in text_of(messages)


def test_a_key_equal_to_a_secret_key_fallback_is_e003(settings: Any) -> None:
    settings.SECRET_KEY_FALLBACKS = ["", "an-old-secret-key", KEY]  # an empty one is no key
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [KEY]

    assert ids(checks.check_encryption_keys()) == ["django_cloudsync.E003"]


def test_a_malformed_key_does_not_hide_another_key_equal_to_the_secret_key(settings: Any) -> None:
    settings.SECRET_KEY = OTHER_KEY
    settings.CLOUDSYNC_ENCRYPTION_KEYS = ["nonsense", OTHER_KEY]

    assert ids(checks.check_encryption_keys()) == ["django_cloudsync.E002", "django_cloudsync.E003"]


def test_one_key_given_as_a_string_is_checked_as_a_ring_of_one(settings: Any) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = KEY
    assert checks.check_encryption_keys() == []

    settings.SECRET_KEY = KEY

    assert ids(checks.check_encryption_keys()) == ["django_cloudsync.E003"]


def test_freshly_generated_keys_pass(settings: Any) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [generate_key(), generate_key()]

    assert checks.check_encryption_keys() == []


def test_the_key_checks_are_registered(settings: Any, provider: Any) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = ["nonsense"]

    assert ids(all_cloudsync_messages()) == ["django_cloudsync.E002"]


# Installed apps.


@pytest.mark.parametrize("missing", ["allauth.socialaccount", "allauth.account"])
def test_missing_allauth_apps_are_e004(missing: str) -> None:
    with installed_apps_without(missing):
        messages = checks.check_installed_apps()

    assert ids(messages) == ["django_cloudsync.E004"]
    assert missing in messages[0].msg


def test_allauth_installed_passes() -> None:
    assert checks.check_installed_apps() == []


# Middleware.


def test_no_cloudsync_middleware_is_w001(settings: Any) -> None:
    settings.MIDDLEWARE = [SESSIONS, AUTH]

    assert ids(checks.check_middleware()) == ["django_cloudsync.W001"]


def test_cloudsync_middleware_before_authentication_is_e005(settings: Any) -> None:
    settings.MIDDLEWARE = [SESSIONS, MIDDLEWARE, AUTH]

    assert ids(checks.check_middleware()) == ["django_cloudsync.E005"]


def test_cloudsync_middleware_without_authentication_is_e005(settings: Any) -> None:
    settings.MIDDLEWARE = [SESSIONS, MIDDLEWARE]

    assert ids(checks.check_middleware()) == ["django_cloudsync.E005"]


@pytest.mark.parametrize(
    "middleware",
    [
        [SESSIONS, AUTH, MIDDLEWARE],
        [SESSIONS, AUTH, f"{__name__}.SiteCloudSyncMiddleware"],
        [SESSIONS, f"{__name__}.SiteAuthenticationMiddleware", MIDDLEWARE],
    ],
    ids=["as documented", "a subclass of ours", "a subclass of AuthenticationMiddleware"],
)
def test_cloudsync_middleware_after_authentication_passes(settings: Any, middleware: list[str]) -> None:
    settings.MIDDLEWARE = middleware

    assert checks.check_middleware() == []


def test_a_middleware_that_does_not_import_is_compared_by_its_path(settings: Any) -> None:
    # Django reports the import error itself; the order of ours is still checked around it.
    settings.MIDDLEWARE = [SESSIONS, "site.missing.Middleware", AUTH, MIDDLEWARE]
    assert checks.check_middleware() == []

    settings.MIDDLEWARE = [SESSIONS, MIDDLEWARE, "site.missing.Middleware", AUTH]

    assert ids(checks.check_middleware()) == ["django_cloudsync.E005"]


def test_a_subclass_before_authentication_is_still_e005(settings: Any) -> None:
    settings.MIDDLEWARE = [SESSIONS, f"{__name__}.SiteCloudSyncMiddleware", AUTH]

    assert ids(checks.check_middleware()) == ["django_cloudsync.E005"]


# The provider.


def test_allauth_storing_its_own_tokens_is_w002(settings: Any, provider: Any) -> None:
    settings.SOCIALACCOUNT_STORE_TOKENS = True

    assert ids(checks.check_provider()) == ["django_cloudsync.W002"]


@pytest.mark.parametrize("value", ["production", "LIVE", 1])
def test_an_unknown_environment_is_e009(provider: Any, value: Any) -> None:
    provider["ENVIRONMENT"] = value

    assert ids(checks.check_provider()) == ["django_cloudsync.E009"]


@pytest.mark.parametrize("value", ["live", "test"])
def test_a_known_environment_passes(provider: Any, value: Any) -> None:
    provider["ENVIRONMENT"] = value

    assert ids(checks.check_provider()) == []


def test_offline_access_off_is_w003(provider: Any) -> None:
    provider["OFFLINE_ACCESS"] = False

    assert ids(checks.check_provider()) == ["django_cloudsync.W003"]


@pytest.mark.parametrize("value", [False, 0, None])
def test_pkce_off_is_w004(provider: Any, value: Any) -> None:
    provider["OAUTH_PKCE_ENABLED"] = value

    assert ids(checks.check_provider()) == ["django_cloudsync.W004"]


def test_pkce_on_passes(provider: Any) -> None:
    provider["OAUTH_PKCE_ENABLED"] = True

    assert checks.check_provider() == []


@pytest.mark.parametrize("value", [None, []])
def test_no_apps_is_w005(provider: Any, value: Any) -> None:
    provider["APPS"] = value

    assert ids(checks.check_provider()) == ["django_cloudsync.W005"]


@pytest.mark.parametrize(
    "apps_setting",
    [
        [{"client_id": "site-client"}],
        [{"client_id": "site-client", "secret": ""}],
        [{"secret": CLIENT_SECRET}],
        [{"client_id": "site-client", "secret": CLIENT_SECRET}, {"client_id": "other"}],
        {"client_id": "site-client", "secret": CLIENT_SECRET},
        ["site-client"],
    ],
    ids=["no secret", "empty secret", "no client id", "second app incomplete", "a dict", "a string"],
)
def test_an_app_without_client_id_or_secret_is_e006(provider: Any, apps_setting: Any) -> None:
    provider["APPS"] = apps_setting

    messages = checks.check_provider()

    assert ids(messages) == ["django_cloudsync.E006"]
    assert CLIENT_SECRET not in text_of(messages)


@pytest.mark.parametrize("name", ["AUTH_URL", "API_URL"])
@pytest.mark.parametrize(
    "url", ["http://auth.example.com", "ftp://auth.example.com", "auth.example.com", "http://[::1"]
)
def test_a_url_that_is_not_https_is_e007_when_debug_is_off(
    settings: Any, provider: Any, name: str, url: str
) -> None:
    settings.DEBUG = False
    provider[name] = url

    messages = checks.check_provider()

    assert ids(messages) == ["django_cloudsync.E007"]
    assert name in messages[0].msg


@pytest.mark.parametrize(
    "url",
    [
        "https://auth.example.com",
        "http://127.0.0.1:8000",
        "http://127.0.0.2:8000",
        "http://localhost:8000",
        "http://[::1]:8000",
    ],
)
def test_https_or_loopback_urls_pass_when_debug_is_off(settings: Any, provider: Any, url: str) -> None:
    settings.DEBUG = False
    provider["AUTH_URL"] = provider["API_URL"] = url

    assert checks.check_provider() == []


def test_the_default_urls_pass(settings: Any, provider: Any) -> None:
    settings.DEBUG = False
    del provider["AUTH_URL"], provider["API_URL"]

    assert checks.check_provider() == []


def test_plain_http_is_allowed_with_debug_on(settings: Any, provider: Any) -> None:
    settings.DEBUG = True
    provider["AUTH_URL"] = provider["API_URL"] = "http://cloudsync.dev.internal"

    assert checks.check_provider() == []


# The redirect URIs of the site's apps (headless sign-in with a code).


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("com.example.app:/oauth2redirect", id="private-use-scheme"),
        pytest.param("https://app.example.com/oauth/cloudsync", id="claimed-https"),
        pytest.param("http://127.0.0.1/callback", id="loopback-ip"),
        pytest.param("http://[::1]:8765/callback", id="loopback-ipv6"),
        pytest.param("http://localhost/callback", id="localhost"),
    ],
)
def test_app_redirect_uris_an_app_can_use_pass(provider: Any, uri: str) -> None:
    provider["APP_REDIRECT_URIS"] = [uri]

    assert checks.check_provider() == []


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("http://app.example.com/callback", id="plain-http-remote"),
        pytest.param("myapp:/callback", id="scheme-not-a-reverse-domain"),
        pytest.param("com.example.app:/callback#fragment", id="fragment"),
        pytest.param("/accounts/cloudsync/app/callback", id="relative"),
        pytest.param("https:///no-host", id="no-host"),
        pytest.param("", id="empty"),
        pytest.param(None, id="not-a-string"),
        pytest.param("https://[::1/callback", id="malformed"),
        pytest.param("https://bücher.example/callback", id="not-ascii"),
        pytest.param("com.example.app:/call back", id="a-space"),
        pytest.param("com.example.app:/callback\n", id="a-control-character"),
    ],
)
def test_an_app_redirect_uri_an_app_cannot_use_is_e010_naming_its_position(provider: Any, uri: Any) -> None:
    provider["APP_REDIRECT_URIS"] = ["com.example.app:/ok", uri]

    messages = checks.check_provider()

    assert ids(messages) == ["django_cloudsync.E010"]
    assert "APP_REDIRECT_URIS'][1]" in messages[0].msg


@pytest.mark.parametrize("value", ["com.example.app:/callback", {"ios": "com.example.app:/callback"}])
def test_app_redirect_uris_that_are_not_a_list_are_e010(provider: Any, value: Any) -> None:
    provider["APP_REDIRECT_URIS"] = value

    assert ids(checks.check_provider()) == ["django_cloudsync.E010"]
    assert conf.app_redirect_uris() == []  # and no app signs in with a code meanwhile


def test_app_redirect_uris_without_headless_is_w007(provider: Any) -> None:
    provider["APP_REDIRECT_URIS"] = ["com.example.app:/callback"]

    with installed_apps_without("allauth.headless"):
        assert ids(checks.check_provider()) == ["django_cloudsync.W007"]


def test_app_redirect_uris_without_headless_serving_apps_is_w007(settings: Any, provider: Any) -> None:
    provider["APP_REDIRECT_URIS"] = ["com.example.app:/callback"]
    settings.HEADLESS_CLIENTS = ("browser",)

    assert ids(checks.check_provider()) == ["django_cloudsync.W007"]


def test_no_app_redirect_uris_pass_without_headless(provider: Any) -> None:
    provider["APP_REDIRECT_URIS"] = []

    with installed_apps_without("allauth.headless"):
        assert checks.check_provider() == []


# Apps signing in with an access token (check --deploy).


def test_token_authentication_left_at_its_default_is_w008_on_deploy(provider: Any) -> None:
    provider.pop("TOKEN_AUTHENTICATION", None)

    assert ids(checks.check_app_token_authentication()) == ["django_cloudsync.W008"]
    assert "django_cloudsync.W008" in ids(run_checks(include_deployment_checks=True, databases=[]))
    assert "django_cloudsync.W008" not in ids(run_checks(databases=[]))  # deploy checks only


@pytest.mark.parametrize("value", [True, False])
def test_token_authentication_set_either_way_passes(provider: Any, value: bool) -> None:
    provider["TOKEN_AUTHENTICATION"] = value

    assert checks.check_app_token_authentication() == []


def test_token_authentication_does_not_matter_without_headless_serving_apps(provider: Any) -> None:
    provider.pop("TOKEN_AUTHENTICATION", None)

    with installed_apps_without("allauth.headless"):
        assert checks.check_app_token_authentication() == []


# The site's API key.


@pytest.mark.parametrize("key", ["pk_live_abcdef123456", "abcdef123456", "SK_TEST_abcdef", 12345])
def test_an_api_key_with_an_unknown_prefix_is_e008(settings: Any, key: Any) -> None:
    settings.CLOUDSYNC_API_KEY = key

    messages = checks.check_api_key()

    assert ids(messages) == ["django_cloudsync.E008"]
    assert str(key) not in text_of(messages)


def test_an_api_key_from_the_environment_is_checked_too(settings: Any, monkeypatch: Any) -> None:
    monkeypatch.delattr(settings, "CLOUDSYNC_API_KEY", raising=False)
    monkeypatch.setenv("CLOUDSYNC_API_KEY", "not-a-cloudsync-key")

    assert ids(checks.check_api_key()) == ["django_cloudsync.E008"]


def test_a_live_api_key_with_debug_on_is_w006(settings: Any) -> None:
    key = "sk_live_0123456789abcdefghij"
    settings.DEBUG = True
    settings.CLOUDSYNC_API_KEY = key

    messages = checks.check_api_key()

    assert ids(messages) == ["django_cloudsync.W006"]
    assert key not in text_of(messages)


@pytest.mark.parametrize(
    ("key", "debug"),
    [("sk_live_0123456789abcdefghij", False), ("sk_test_0123456789abcdefghij", True), (None, True)],
)
def test_a_fitting_api_key_or_none_passes(settings: Any, monkeypatch: Any, key: Any, debug: bool) -> None:
    monkeypatch.delenv("CLOUDSYNC_API_KEY", raising=False)
    settings.DEBUG = debug
    settings.CLOUDSYNC_API_KEY = key

    assert checks.check_api_key() == []


# No message shows a secret, whatever the misconfiguration.


def misconfigure_everything(settings: Any, provider: dict[str, Any]) -> list[str]:
    """Every check fails at once; returns the secrets involved."""
    api_key = "sk_live_ThisIsTheSitesLiveKey123"
    settings.SECRET_KEY = OTHER_KEY
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OTHER_KEY, KEY + "junk", KEY]
    settings.CLOUDSYNC_API_KEY = api_key
    settings.DEBUG = True
    settings.SOCIALACCOUNT_STORE_TOKENS = True
    provider.update(
        APPS=[
            {"client_id": "site-client", "secret": CLIENT_SECRET},
            {"client_id": "", "secret": CLIENT_SECRET},
        ],
        OFFLINE_ACCESS=False,
        OAUTH_PKCE_ENABLED=False,
    )
    return [OTHER_KEY, KEY, KEY + "junk", api_key, CLIENT_SECRET]


@pytest.mark.parametrize(
    "check",
    [checks.check_encryption_keys, checks.check_provider, checks.check_api_key],
    ids=lambda check: check.__name__,
)
def test_no_message_contains_a_key_or_secret(
    settings: Any, provider: Any, check: Callable[[], list[CheckMessage]]
) -> None:
    secrets = misconfigure_everything(settings, provider)

    messages = check()

    assert messages  # the misconfiguration is reported...
    text = text_of(messages) + repr(messages)
    for secret in secrets:  # ...without the secrets in it
        assert secret not in text
        assert secret.rstrip("=") not in text


def test_run_checks_reports_every_misconfiguration_without_a_secret(settings: Any, provider: Any) -> None:
    secrets = misconfigure_everything(settings, provider)

    messages = all_cloudsync_messages()

    assert sorted(ids(messages)) == [
        "django_cloudsync.E002",
        "django_cloudsync.E003",
        "django_cloudsync.E006",
        "django_cloudsync.W002",
        "django_cloudsync.W003",
        "django_cloudsync.W004",
        "django_cloudsync.W006",
    ]
    text = text_of(messages)
    for secret in secrets:
        assert secret not in text


# E011: allauth's default email verification, with Django's default (unconfigured) SMTP backend.


@pytest.fixture
def new_site_mail(settings: Any) -> Any:
    """allauth's and Django's mail settings as `startproject` and allauth leave them."""
    if django.VERSION >= (6, 1):
        # There mail is MAILERS, which startproject sets (the console); the EMAIL_* settings these
        # tests drive warn when set. The other Django lines of the matrix run them.
        pytest.skip("Django 6.1 configures mail with MAILERS: see test_no_e011_when_mailers_are_set")
    del settings.ACCOUNT_EMAIL_VERIFICATION  # allauth's default applies
    settings.EMAIL_BACKEND = global_settings.EMAIL_BACKEND  # `del` would hide Django's default too
    return settings


def test_default_email_verification_with_the_default_smtp_backend_is_e011(new_site_mail: Any) -> None:
    messages = checks.check_sign_up_mail()

    assert ids(messages) == ["django_cloudsync.E011"]
    assert messages[0].is_serious()  # an Error: runserver and migrate stop
    assert "ACCOUNT_EMAIL_VERIFICATION is 'optional'" in messages[0].msg
    assert 'ACCOUNT_EMAIL_VERIFICATION = "none"' in hint_of(messages[0])
    assert "SILENCED_SYSTEM_CHECKS" in hint_of(messages[0])
    assert "django_cloudsync.E011" in [message.id for message in run_checks()]


@pytest.mark.parametrize("verification", ["optional", "mandatory"])
def test_e011_names_the_social_setting_when_that_one_decides(new_site_mail: Any, verification: str) -> None:
    new_site_mail.ACCOUNT_EMAIL_VERIFICATION = "none"
    new_site_mail.SOCIALACCOUNT_EMAIL_VERIFICATION = verification

    messages = checks.check_sign_up_mail()

    assert ids(messages) == ["django_cloudsync.E011"]
    assert f"SOCIALACCOUNT_EMAIL_VERIFICATION is '{verification}'" in messages[0].msg
    assert 'SOCIALACCOUNT_EMAIL_VERIFICATION = "none"' in hint_of(messages[0])


@pytest.mark.parametrize(
    "fix",
    [
        {"ACCOUNT_EMAIL_VERIFICATION": "none"},
        {"SOCIALACCOUNT_EMAIL_VERIFICATION": "none"},
        {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"},
        {"EMAIL_HOST": "smtp.example.com"},
        {"EMAIL_PORT": 587},
    ],
    ids=lambda fix: next(iter(fix)),
)
def test_each_fix_the_e011_hint_names_silences_it(new_site_mail: Any, fix: dict[str, Any]) -> None:
    for name, value in fix.items():
        setattr(new_site_mail, name, value)

    assert checks.check_sign_up_mail() == []


def test_no_e011_when_allauth_trusts_cloudsyncs_addresses(new_site_mail: Any, provider: Any) -> None:
    provider["VERIFIED_EMAIL"] = True

    assert checks.check_sign_up_mail() == []


@pytest.mark.parametrize("missing", ["allauth.socialaccount", "allauth.account"])
def test_no_e011_without_allauths_apps_which_is_e004(new_site_mail: Any, missing: str) -> None:
    with installed_apps_without(missing):
        assert checks.check_sign_up_mail() == []
        assert ids(checks.check_installed_apps()) == ["django_cloudsync.E004"]


def test_e011_stops_manage_py_check_until_silenced_for_a_local_mail_server(new_site_mail: Any) -> None:
    with pytest.raises(SystemCheckError, match=r"django_cloudsync\.E011"):
        call_command("check")

    new_site_mail.SILENCED_SYSTEM_CHECKS = ["django_cloudsync.E011"]

    call_command("check", stdout=StringIO())


@pytest.mark.skipif(django.VERSION < (6, 1), reason="MAILERS is Django 6.1's")
def test_no_e011_when_mailers_are_set(settings: Any) -> None:
    del settings.ACCOUNT_EMAIL_VERIFICATION  # allauth's default: a verification mail
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}}

    assert "django_cloudsync.E011" not in ids(run_checks(databases=[]))


# E012: the numeric settings, validated by conf's readers (the same rule at start-up and per call).

#: Each numeric setting, its reader in conf (the one a call uses), and values it refuses.
BAD_LIMITS: dict[str, tuple[Callable[[], object], list[Any]]] = {
    "CLOUDSYNC_TIMEOUT": (
        conf.timeout,
        [
            "5",
            0,
            -1,
            float("nan"),
            float("inf"),
            True,
            None,
            (1, 2, 3),
            [5.0],
            (5.0, "15"),
            (5.0, 0),
            (True, 5.0),
        ],
    ),
    "CLOUDSYNC_DEADLINE": (
        conf.deadline,
        [0, -1, -0.5, float("nan"), float("inf"), "60", True, None, 10**400],
    ),
    "CLOUDSYNC_MAX_RETRIES": (conf.max_retries, [-1, 2.0, "2", True, None, float("nan")]),
    "CLOUDSYNC_MAX_RETRY_AFTER": (
        conf.max_retry_after,
        [-1, -0.1, float("nan"), float("inf"), "30", True, None],
    ),
    "CLOUDSYNC_REFRESH_LEEWAY": (conf.refresh_leeway, [-1, float("nan"), float("-inf"), "60", False, (60,)]),
    "CLOUDSYNC_LOCK_TIMEOUT": (conf.lock_timeout, [-0.1, -5, float("nan"), float("inf"), "5", True]),
    "CLOUDSYNC_MAX_RESPONSE_BYTES": (conf.max_response_bytes, [0, -1, 1024.0, "1024", True, None]),
    "CLOUDSYNC_ASYNC_MAX_CONNECTIONS": (conf.async_max_connections, [0, -1, 2.0, "256", True, None]),
}

#: The default each hint names: the DEFAULT_* constants of conf.
DEFAULTS = {
    "CLOUDSYNC_TIMEOUT": repr(conf.DEFAULT_TIMEOUT),
    "CLOUDSYNC_DEADLINE": repr(conf.DEFAULT_DEADLINE),
    "CLOUDSYNC_MAX_RETRIES": repr(conf.DEFAULT_MAX_RETRIES),
    "CLOUDSYNC_MAX_RETRY_AFTER": repr(conf.DEFAULT_MAX_RETRY_AFTER),
    "CLOUDSYNC_REFRESH_LEEWAY": repr(conf.DEFAULT_REFRESH_LEEWAY),
    "CLOUDSYNC_LOCK_TIMEOUT": "None",
    "CLOUDSYNC_MAX_RESPONSE_BYTES": repr(conf.DEFAULT_MAX_RESPONSE_BYTES),
    "CLOUDSYNC_ASYNC_MAX_CONNECTIONS": repr(conf.DEFAULT_ASYNC_MAX_CONNECTIONS),
}


@pytest.mark.parametrize(
    ("name", "value"),
    [(name, value) for name, (_, values) in BAD_LIMITS.items() for value in values],
    ids=lambda param: param if isinstance(param, str) else repr(param)[:20],
)
def test_a_bad_numeric_setting_is_one_e012_naming_it(settings: Any, name: str, value: Any) -> None:
    setattr(settings, name, value)

    messages = checks.check_limits()

    assert ids(messages) == ["django_cloudsync.E012"]
    assert messages[0].is_serious()  # an Error: runserver and migrate stop
    assert messages[0].msg.startswith(f"{name} must be ")
    assert f"the default, {DEFAULTS[name]}" in hint_of(messages[0])
    read, _ = BAD_LIMITS[name]
    with pytest.raises(errors.ConfigurationError, match=name):  # and a call meets the same rule
        read()


def test_the_e012_hint_shows_the_value_cut_short(settings: Any) -> None:
    settings.CLOUDSYNC_DEADLINE = "sixty seconds, or thereabouts, give or take a minute or two"

    [message] = checks.check_limits()

    assert message.msg == "CLOUDSYNC_DEADLINE must be a positive number of seconds."
    assert hint_of(message).startswith("It is 'sixty seconds")
    assert "thereabouts, give" not in hint_of(message)  # the middle of a long value left out


@pytest.mark.parametrize(
    ("name", "value", "read"),
    [
        ("CLOUDSYNC_TIMEOUT", 7, (7.0, 7.0)),
        ("CLOUDSYNC_TIMEOUT", 0.25, (0.25, 0.25)),
        ("CLOUDSYNC_TIMEOUT", (2, 3.5), (2.0, 3.5)),
        ("CLOUDSYNC_TIMEOUT", [5.0, 15], (5.0, 15.0)),
        ("CLOUDSYNC_DEADLINE", 1, 1.0),
        ("CLOUDSYNC_DEADLINE", 0.1, 0.1),
        ("CLOUDSYNC_MAX_RETRIES", 0, 0),
        ("CLOUDSYNC_MAX_RETRIES", 5, 5),
        ("CLOUDSYNC_MAX_RETRY_AFTER", 0, 0.0),
        ("CLOUDSYNC_MAX_RETRY_AFTER", 2.5, 2.5),
        ("CLOUDSYNC_REFRESH_LEEWAY", 0.0, 0.0),
        ("CLOUDSYNC_REFRESH_LEEWAY", 120, 120.0),
        ("CLOUDSYNC_LOCK_TIMEOUT", 0, 0.0),
        ("CLOUDSYNC_LOCK_TIMEOUT", 0.2, 0.2),
        ("CLOUDSYNC_MAX_RESPONSE_BYTES", 1, 1),
        ("CLOUDSYNC_MAX_RESPONSE_BYTES", 1024, 1024),
        ("CLOUDSYNC_ASYNC_MAX_CONNECTIONS", 1, 1),
        ("CLOUDSYNC_ASYNC_MAX_CONNECTIONS", 512, 512),
    ],
)
def test_a_valid_numeric_setting_passes_and_reads_as_before(
    settings: Any, name: str, value: Any, read: Any
) -> None:
    setattr(settings, name, value)

    assert checks.check_limits() == []
    reader, _ = BAD_LIMITS[name]
    value_read = reader()
    assert value_read == read
    assert type(value_read) is type(read)


def test_unset_numeric_settings_pass_as_their_defaults(settings: Any) -> None:
    for name in BAD_LIMITS:
        if hasattr(settings, name):
            delattr(settings, name)

    assert checks.check_limits() == []
    assert conf.timeout() == conf.DEFAULT_TIMEOUT
    assert conf.deadline() == conf.DEFAULT_DEADLINE
    assert conf.max_retries() == conf.DEFAULT_MAX_RETRIES
    assert conf.max_retry_after() == conf.DEFAULT_MAX_RETRY_AFTER
    assert conf.refresh_leeway() == conf.DEFAULT_REFRESH_LEEWAY
    assert conf.lock_timeout() == conf.DEFAULT_DEADLINE + conf.REFRESH_LEASE_MARGIN
    assert conf.max_response_bytes() == conf.DEFAULT_MAX_RESPONSE_BYTES
    assert conf.async_max_connections() == conf.DEFAULT_ASYNC_MAX_CONNECTIONS


def test_a_lock_timeout_of_none_is_as_long_as_a_refresh_can_take(settings: Any) -> None:
    settings.CLOUDSYNC_LOCK_TIMEOUT = None
    settings.CLOUDSYNC_DEADLINE = 20

    assert checks.check_limits() == []
    assert conf.lock_timeout() == 20 + conf.REFRESH_LEASE_MARGIN


def test_each_bad_numeric_setting_is_its_own_e012(settings: Any) -> None:
    # The lock timeout left at None: its default derives from the bad deadline, which is reported once.
    settings.CLOUDSYNC_LOCK_TIMEOUT = None
    settings.CLOUDSYNC_DEADLINE = 0
    settings.CLOUDSYNC_MAX_RESPONSE_BYTES = "1MB"

    messages = checks.check_limits()

    assert ids(messages) == ["django_cloudsync.E012", "django_cloudsync.E012"]
    assert [message.msg.split()[0] for message in messages] == [
        "CLOUDSYNC_DEADLINE",
        "CLOUDSYNC_MAX_RESPONSE_BYTES",
    ]


def test_e012_stops_manage_py_check(settings: Any, provider: Any) -> None:
    settings.CLOUDSYNC_TIMEOUT = (5.0, 15.0, 30.0)

    assert ids(all_cloudsync_messages()) == ["django_cloudsync.E012"]  # registered
    with pytest.raises(SystemCheckError, match=r"django_cloudsync\.E012"):
        call_command("check")

    settings.CLOUDSYNC_TIMEOUT = (5.0, 30.0)

    call_command("check", stdout=StringIO())
