"""django-cloudsync's settings, each with its documented default.

Every value is read when it is needed, never at import time, so ``override_settings`` and
pytest-django's ``settings`` fixture work. Provider settings live where allauth keeps them,
in ``SOCIALACCOUNT_PROVIDERS["cloudsync"]``; the app's own settings are ``CLOUDSYNC_*``.

``CLOUDSYNC_DEADLINE`` (default ``60`` seconds) is the longest one API call or token request may
take in all: connecting, the headers, the body however slowly it drips, and for an API call its
retries and the ``Retry-After`` waits between them. The per-read ``CLOUDSYNC_TIMEOUT`` alone would
let a server that sends a byte a second hold a worker forever. The default leaves room for one
``Retry-After`` of ``CLOUDSYNC_MAX_RETRY_AFTER`` (30) and an attempt after it.

The numeric settings are validated by the readers below, each through one of the small
validators that follow the defaults: a wrong value is a :class:`~django_cloudsync.errors.ConfigurationError`
naming the setting when a call reads it, and check E012 (:mod:`.checks.limits`) calls the same
readers at start-up, so that the rule is written once.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, TypeGuard

from django.conf import settings

from . import dialect, errors
from .crypto import TokenCipher

PROVIDER_ID = "cloudsync"

#: Scopes asked for when ``SCOPE`` is not set: the least that lets the example pages work.
DEFAULT_SCOPE = ["workspaces:read"]
#: (connect, read) timeout in seconds for every outbound request.
DEFAULT_TIMEOUT = (5.0, 15.0)
DEFAULT_MAX_RETRIES = 2
DEFAULT_REFRESH_LEEWAY = 60
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
DEFAULT_MAX_RETRY_AFTER = 30.0
#: Connections the async client may hold open per event loop: enough that a view gathering a
#: couple of hundred calls sends them all at once instead of in rounds.
DEFAULT_ASYNC_MAX_CONNECTIONS = 256
#: Seconds one API call or token request may take in all (see the module's docstring).
DEFAULT_DEADLINE = 60.0
#: Seconds a refresh's lease outlasts the longest its token request may take: a claimer that is
#: still alive always finishes (or gives up) before another worker may take its lease.
REFRESH_LEASE_MARGIN = 5.0
#: The largest float: a number of seconds above it is infinite, or an int no float can hold.
_MAX_SECONDS = sys.float_info.max


def _is_number(value: object) -> TypeGuard[int | float]:
    """An int or a float; never a bool, which Python counts as an int (``True`` is no limit)."""
    return isinstance(value, (int, float)) and value.__class__ is not bool


def _positive_seconds(name: str, value: object, rule: str = "a positive number of seconds") -> float:
    """``value`` as seconds, finite and above 0; else :class:`~.errors.ConfigurationError` (E012)."""
    # The chained comparison is also False for NaN, for infinity and for an int too large for a
    # float (whose float() would raise OverflowError). _is_number() inlined: timeout() and
    # deadline() run this on every call.
    if isinstance(value, (int, float)) and value.__class__ is not bool and 0 < value <= _MAX_SECONDS:
        return float(value)
    raise errors.ConfigurationError(f"{name} must be {rule}")


def _non_negative_seconds(name: str, value: object) -> float:
    """``value`` as seconds, finite and 0 or more; else :class:`~.errors.ConfigurationError` (E012)."""
    if _is_number(value) and 0 <= value <= _MAX_SECONDS:
        return float(value)
    raise errors.ConfigurationError(f"{name} must be a number of seconds, 0 or more")


def _count(name: str, value: object, *, least: int) -> int:
    """``value``, an int (not a float, not a bool) of at least ``least`` (0 or 1); else E012."""
    if isinstance(value, int) and value.__class__ is not bool and value >= least:
        return value
    rule = "a positive integer" if least else "an integer, 0 or more"
    raise errors.ConfigurationError(f"{name} must be {rule}")


def provider_settings() -> dict[str, Any]:
    """``SOCIALACCOUNT_PROVIDERS["cloudsync"]``, or ``{}``."""
    providers = getattr(settings, "SOCIALACCOUNT_PROVIDERS", None) or {}
    value = providers.get(PROVIDER_ID) or {}
    return value if isinstance(value, dict) else {}


def auth_url() -> str:
    """The authorization server's base URL (``AUTH_URL``), without a trailing slash."""
    return str(provider_settings().get("AUTH_URL") or dialect.DEFAULT_AUTH_URL).rstrip("/")


def api_url() -> str:
    """The API's base URL (``API_URL``), without a trailing slash."""
    return str(provider_settings().get("API_URL") or dialect.DEFAULT_API_URL).rstrip("/")


def offline_access() -> bool:
    """Whether ``offline_access`` is always requested (``OFFLINE_ACCESS``, default ``True``)."""
    return bool(provider_settings().get("OFFLINE_ACCESS", True))


def environment_setting() -> object:
    """``ENVIRONMENT`` as configured (``None`` when unset; anything else than ``"live"`` or
    ``"test"`` is check E009)."""
    return provider_settings().get("ENVIRONMENT")


def site_environment() -> str:
    """The CloudSync environment this site talks to: ``"live"`` or ``"test"``.

    ``SOCIALACCOUNT_PROVIDERS["cloudsync"]["ENVIRONMENT"]`` when set; otherwise ``"live"`` when
    ``AUTH_URL`` is CloudSync's production authorization server and ``"test"`` for any other
    server (a sandbox, the fake). A site behind a proxy to production sets ``"live"`` itself.
    """
    configured = environment_setting()
    if configured in (dialect.LIVE, dialect.TEST):  # anything else is check E009
        return str(configured)
    return dialect.LIVE if auth_url() == dialect.DEFAULT_AUTH_URL.rstrip("/") else dialect.TEST


def token_authentication_enabled() -> bool:
    """``TOKEN_AUTHENTICATION`` (default ``True``): whether apps may sign in with their own token."""
    return bool(provider_settings().get("TOKEN_AUTHENTICATION", True))


def token_authentication_decided() -> bool:
    """Whether ``TOKEN_AUTHENTICATION`` is set either way (until then, check W008 warns)."""
    return "TOKEN_AUTHENTICATION" in provider_settings()


def app_redirect_uris() -> list[str]:
    """``APP_REDIRECT_URIS`` (default ``[]``): the redirect URIs of the site's own apps.

    An app signs in with an authorization code only if it got the code for one of these
    (headless, :func:`django_cloudsync.socialaccount.app_tokens.verify_app_code`); empty turns that off.
    """
    value = provider_settings().get("APP_REDIRECT_URIS") or []
    if not isinstance(value, (list, tuple)):  # check E010
        return []
    return [uri for uri in value if isinstance(uri, str)]


def headless_serves_apps() -> bool:
    """Whether ``allauth.headless`` is installed with the ``app`` client (allauth's default)."""
    from django.apps import apps

    if not apps.is_installed("allauth.headless"):
        return False
    from allauth.headless import app_settings as headless_settings
    from allauth.headless.constants import Client

    return Client.APP in headless_settings.CLIENTS


def timeout() -> tuple[float, float]:
    """``CLOUDSYNC_TIMEOUT``: seconds, or a (connect, read) pair. Never ``None``: no call waits forever."""
    value = getattr(settings, "CLOUDSYNC_TIMEOUT", DEFAULT_TIMEOUT)
    rule = "a positive number of seconds, or a (connect, read) pair of them"
    if isinstance(value, (tuple, list)) and len(value) == 2:
        connect, read = value
        return (
            _positive_seconds("CLOUDSYNC_TIMEOUT", connect, rule),
            _positive_seconds("CLOUDSYNC_TIMEOUT", read, rule),
        )
    seconds = _positive_seconds("CLOUDSYNC_TIMEOUT", value, rule)
    return (seconds, seconds)


def deadline() -> float:
    """``CLOUDSYNC_DEADLINE``: seconds one call may take in all, retries and body included.

    Finite and above 0: no call may wait forever, nor be refused before it starts.
    """
    return _positive_seconds("CLOUDSYNC_DEADLINE", getattr(settings, "CLOUDSYNC_DEADLINE", DEFAULT_DEADLINE))


def max_retries() -> int:
    """``CLOUDSYNC_MAX_RETRIES``: retries of an idempotent API call after 429, 5xx or a network error."""
    value = getattr(settings, "CLOUDSYNC_MAX_RETRIES", DEFAULT_MAX_RETRIES)
    return _count("CLOUDSYNC_MAX_RETRIES", value, least=0)


def max_retry_after() -> float:
    """``CLOUDSYNC_MAX_RETRY_AFTER``: the longest ``Retry-After`` (seconds) a call waits out.

    A longer one is raised as :class:`~django_cloudsync.errors.RateLimited` at once; ``0`` never
    waits (a site whose web requests must not stall), and a task queue may allow more.
    """
    value = getattr(settings, "CLOUDSYNC_MAX_RETRY_AFTER", DEFAULT_MAX_RETRY_AFTER)
    return _non_negative_seconds("CLOUDSYNC_MAX_RETRY_AFTER", value)


def refresh_leeway() -> float:
    """``CLOUDSYNC_REFRESH_LEEWAY``: refresh this many seconds before expiry (capped per token)."""
    value = getattr(settings, "CLOUDSYNC_REFRESH_LEEWAY", DEFAULT_REFRESH_LEEWAY)
    return _non_negative_seconds("CLOUDSYNC_REFRESH_LEEWAY", value)


def token_request_bound() -> float:
    """The longest one token request may take, in seconds: what a refresh's lease must outlast.

    ``CLOUDSYNC_DEADLINE``: the token endpoint is asked once, never retried, and the deadline
    bounds that one exchange however slowly its body drips.
    """
    return deadline()


def refresh_lease() -> float:
    """Seconds a worker's claim on a refresh lasts: past it, the claimer is presumed dead."""
    return token_request_bound() + REFRESH_LEASE_MARGIN


def lock_timeout() -> float:
    """``CLOUDSYNC_LOCK_TIMEOUT``: the longest a worker waits for another (seconds).

    Each wait is bounded by it: for the process-local lock of an account, for another worker's
    refresh of the same tokens, for a database lock (SQLite's write lock, a row lock). Past it
    the wait ends in :class:`~django_cloudsync.errors.LockTimeout` (or its subclass
    :class:`~django_cloudsync.errors.RefreshInProgress`). The default, ``None``, is as long as a
    refresh can take (``CLOUDSYNC_DEADLINE`` plus 5 s), so that a waiter outlasts a live
    refresh and uses its tokens; a web site that prefers failing fast sets less.
    """
    value = lock_timeout_setting()
    return refresh_lease() if value is None else value


def lock_timeout_setting() -> float | None:
    """``CLOUDSYNC_LOCK_TIMEOUT`` as set: ``None`` (the default) or seconds, 0 or more (else E012)."""
    value = getattr(settings, "CLOUDSYNC_LOCK_TIMEOUT", None)
    return None if value is None else _non_negative_seconds("CLOUDSYNC_LOCK_TIMEOUT", value)


def max_response_bytes() -> int:
    """``CLOUDSYNC_MAX_RESPONSE_BYTES``: a larger response body is refused as invalid."""
    value = getattr(settings, "CLOUDSYNC_MAX_RESPONSE_BYTES", DEFAULT_MAX_RESPONSE_BYTES)
    return _count("CLOUDSYNC_MAX_RESPONSE_BYTES", value, least=1)


def async_max_connections() -> int:
    """``CLOUDSYNC_ASYNC_MAX_CONNECTIONS``: open connections to CloudSync per event loop, at most.

    Read when an event loop's client is created; calls beyond it wait for a free connection.
    """
    value = getattr(settings, "CLOUDSYNC_ASYNC_MAX_CONNECTIONS", DEFAULT_ASYNC_MAX_CONNECTIONS)
    return _count("CLOUDSYNC_ASYNC_MAX_CONNECTIONS", value, least=1)


def encryption_keys() -> list[str]:
    """``CLOUDSYNC_ENCRYPTION_KEYS``: the first key encrypts, every key decrypts."""
    value = getattr(settings, "CLOUDSYNC_ENCRYPTION_KEYS", None) or []
    if isinstance(value, str):
        return [value]
    return list(value)


def api_key() -> str | None:
    """``CLOUDSYNC_API_KEY`` setting, else the environment variable of the same name."""
    return getattr(settings, "CLOUDSYNC_API_KEY", None) or os.environ.get("CLOUDSYNC_API_KEY") or None


def cipher() -> TokenCipher:
    """The :class:`~django_cloudsync.crypto.TokenCipher` of ``CLOUDSYNC_ENCRYPTION_KEYS``.

    Built once per distinct key list (keys are parsed once, not on every token read).
    """
    return _cipher_for(tuple(encryption_keys()))


@functools.lru_cache(maxsize=4)
def _cipher_for(keys: tuple[str, ...]) -> TokenCipher:
    return TokenCipher(keys)
