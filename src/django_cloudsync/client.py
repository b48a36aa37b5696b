"""The CloudSync API client, shaped like CloudSync's own SDK.

::

    CloudSync(api_key="sk_test_...")        # server-to-server, the account owner's key
    CloudSync(access_token="at_test_...")   # a bare OAuth access token
    CloudSync(token_source=source)          # a user's stored token, refreshed as needed

Every request goes through :func:`django_cloudsync.http.send` (one pooled session, timeouts,
bounded bodies, no redirects). On top of that this module enforces where a credential may go
(only to the configured API host, over HTTPS unless it is a loopback address or ``DEBUG`` is on,
only in the ``Authorization`` header), maps CloudSync's answers to :mod:`~django_cloudsync.errors`,
retries idempotent calls with backoff, and refreshes a rejected user token once.

Secrets never leave through ``repr()``, logs, exception messages or Django's error reports:
the functions whose locals hold one are marked with ``sensitive_variables``, and network errors
lose the library frames (whose locals hold the request headers) before they reach a caller.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import requests
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from . import conf, dialect, errors, http

logger = logging.getLogger("django_cloudsync")

#: The sleep between retries. Module-level and looked up at call time so tests can replace it
#: (or pass ``sleep=`` to :class:`CloudSync`) to run fast and count the waits.
_sleep: Callable[[float], None] = time.sleep

#: Methods that may be sent twice without changing the outcome (RFC 9110 §9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})

#: Anything but a ``b64token`` cannot be sent in a header safely (and requests' own complaint
#: about a bad header value would quote the value, i.e. the secret).
_B64TOKEN = dialect.TOKEN_PATTERN
#: An error code we are willing to carry around and show: short, plain ASCII.
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
#: One ``name=value`` or ``name="quoted value"`` pair of a ``WWW-Authenticate`` challenge.
_AUTH_PARAM = re.compile(r'([A-Za-z0-9_\-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)')
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


class TokenSource(Protocol):
    """Where a user's access token comes from (implemented over the database elsewhere).

    An implementation may also expose an ``environment`` attribute (``"live"``/``"test"``).
    """

    def get_access_token(self) -> str:
        """A currently valid access token, refreshed first if it is about to expire."""
        ...

    def refresh_after_rejection(self, rejected_token: str) -> str:
        """The API answered 401 to ``rejected_token``: refresh (unless someone already did) and
        return the new token. Raises :class:`~django_cloudsync.errors.ReauthorizationRequired`
        if the grant is dead."""
        ...


class CloudSync:
    """A client for CloudSync's API. Give exactly one of ``api_key``, ``access_token``, ``token_source``.

    ``base_url``, ``timeout`` and ``max_retries`` default to the settings, read at call time.
    ``backoff`` is the first retry's delay in seconds (doubled per retry, capped at
    :attr:`BACKOFF_CAP`); ``sleep`` replaces ``time.sleep`` between retries.
    """

    #: Longest wait between two retries computed from the backoff alone.
    BACKOFF_CAP: float = 5.0
    DEFAULT_BACKOFF: float = 0.2

    @sensitive_variables("api_key", "access_token", "secret", "credentials")
    def __init__(
        self,
        *,
        api_key: str | None = None,
        access_token: str | None = None,
        token_source: TokenSource | None = None,
        base_url: str | None = None,
        timeout: float | tuple[float, float] | None = None,
        max_retries: int | None = None,
        backoff: float | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        credentials = {"api_key": api_key, "access_token": access_token, "token_source": token_source}
        given = [name for name, value in credentials.items() if value is not None]
        if len(given) != 1:
            raise TypeError("CloudSync() takes exactly one of api_key, access_token or token_source")
        self._kind: str = given[0]
        # The secret lives only here; __repr__ below never shows it. (A name Django's settings
        # filter would hide is not enough: error reports show objects by repr.)
        self._secret: str | None = None
        self._token_source: TokenSource | None = token_source
        if api_key is not None or access_token is not None:
            secret = api_key if api_key is not None else access_token
            if not isinstance(secret, str) or not _B64TOKEN.fullmatch(secret):
                # Never echo the value: it is a secret even when it is malformed.
                raise ValueError(f"{self._kind} must be a non-empty token of printable characters")
            self._secret = secret
        elif not callable(getattr(token_source, "get_access_token", None)) or not callable(
            getattr(token_source, "refresh_after_rejection", None)
        ):
            raise TypeError("token_source must implement get_access_token() and refresh_after_rejection()")

        if base_url is not None:
            base_url = base_url.rstrip("/")
            _split_base_url(base_url)  # fail fast on a malformed explicit URL
        self._base_url = base_url
        self._timeout = _normalize_timeout(timeout) if timeout is not None else None
        if max_retries is not None and (not isinstance(max_retries, int) or max_retries < 0):
            raise ValueError("max_retries must be a non-negative integer")
        self._max_retries = max_retries
        if backoff is not None and backoff < 0:
            raise ValueError("backoff must not be negative")
        self._backoff = self.DEFAULT_BACKOFF if backoff is None else float(backoff)
        self._sleep_fn = sleep

    # -- configuration read at call time -------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API's base URL, without a trailing slash."""
        return self._base_url if self._base_url is not None else conf.api_url()

    @property
    def timeout(self) -> tuple[float, float]:
        """The (connect, read) timeout of each attempt."""
        return self._timeout if self._timeout is not None else conf.timeout()

    @property
    def max_retries(self) -> int:
        """How many times an idempotent call is retried after 429, 5xx or a network error."""
        return self._max_retries if self._max_retries is not None else max(0, conf.max_retries())

    @property
    def environment(self) -> str | None:
        """``"live"`` or ``"test"`` from the key's or token's prefix; ``None`` when unknown."""
        if self._kind == "api_key":
            return dialect.environment_of(self._secret or "", dialect.API_KEY_PREFIXES)
        if self._kind == "access_token":
            return dialect.environment_of(self._secret or "", dialect.ACCESS_TOKEN_PREFIXES)
        environment = getattr(self._token_source, "environment", None)
        return environment if environment in (dialect.LIVE, dialect.TEST) else None

    @property
    def scopes(self) -> list[str] | None:
        """The scopes of the user's grant (for a ``token_source`` client that knows them), else ``None``."""
        scopes = getattr(self._token_source, "scopes", None)
        return list(scopes) if scopes is not None else None

    def __repr__(self) -> str:
        # Shown on Django's error pages for ``self``: kind, environment and host only.
        try:
            where = _display_url(self.base_url)
        except Exception:  # repr must never raise, even with broken settings
            where = "?"
        if self._kind == "token_source":
            what = f"token_source({type(self._token_source).__name__})"
        else:
            what = f"{self._kind}({self.environment or '?'})"
        return f"<CloudSync {what} {where}>"

    __str__ = __repr__

    # -- the API -------------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        """``GET /v1/me``: the user (or key owner); always has a string ``id``."""
        data = self.get(dialect.ME_PATH)
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
            raise errors.InvalidResponse("CloudSync's /v1/me answer has no account id")
        return data

    def workspaces(self) -> list[dict[str, Any]]:
        """``GET /v1/workspaces``: the workspaces (needs ``workspaces:read``)."""
        data = self.get(dialect.WORKSPACES_PATH)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise errors.InvalidResponse("CloudSync's /v1/workspaces answer is not a list of objects")
        return items

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """``GET`` a relative API path; the parsed JSON body (``None`` if empty)."""
        return self._request("GET", path, params=params)

    def post(self, path: str, json: Any = None) -> Any:
        """``POST`` JSON to a relative API path. Never retried (it may not be idempotent)."""
        return self._request("POST", path, json_body=json)

    def put(self, path: str, json: Any = None) -> Any:
        """``PUT`` JSON to a relative API path."""
        return self._request("PUT", path, json_body=json)

    def patch(self, path: str, json: Any = None) -> Any:
        """``PATCH`` JSON to a relative API path. Never retried (it may not be idempotent)."""
        return self._request("PATCH", path, json_body=json)

    def delete(self, path: str) -> Any:
        """``DELETE`` a relative API path."""
        return self._request("DELETE", path)

    # -- the machinery -------------------------------------------------------------------

    @sensitive_variables("token", "headers", "rejected")
    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
    ) -> Any:
        url = self._url_for(path)  # ValueError / ConfigurationError before any credential moves
        retries_left = self.max_retries if method in IDEMPOTENT_METHODS else 0
        timeout = self.timeout
        token = self._current_token()
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            retry_after: float | None = None
            try:
                response = self._send(method, url, path, headers, params, json_body, timeout, attempt)
                status = response.status_code
                if 200 <= status < 300:
                    return _success_body(response)
                if status != 401 or self._token_source is None or refreshed:
                    retry_after = _retry_after(response)
                    raise _error_for(response, token, retry_after)
            except (errors.NetworkError, errors.RateLimited, errors.ServerError) as exc:
                delay = self._retry_delay(attempt, retry_after) if retries_left > 0 else None
                if delay is None:
                    # Raise from here with a fresh traceback: only this module's frames, whose
                    # secret-holding locals are marked sensitive.
                    raise exc.with_traceback(None) from exc.__cause__
                retries_left -= 1
                logger.debug("CloudSync API %s %s: retrying in %.2fs", method, path, delay)
                sleep = self._sleep_fn if self._sleep_fn is not None else _sleep
                sleep(delay)
                continue
            # A 401 to a user's token: it expired or was revoked early. The request was not
            # executed, so repeating it is safe for any method. Refresh once (outside the retry
            # handling above: a failing refresh raises its own error); a second 401 is final.
            logger.debug("CloudSync API %s %s: token rejected, refreshing it", method, path)
            source = self._token_source
            assert source is not None  # only a refreshable 401 gets here
            rejected = token
            token = self._checked_token(source.refresh_after_rejection(rejected))
            refreshed = True

    @sensitive_variables("headers")
    def _send(
        self,
        method: str,
        url: str,
        path: str,
        headers: dict[str, str],
        params: Mapping[str, Any] | None,
        json_body: Any,
        timeout: tuple[float, float],
        attempt: int,
    ) -> requests.Response:
        """One attempt through the pooled session, logged (method, path, outcome; never headers)."""
        try:
            response = http.send(
                method, url, headers=headers, json_body=json_body, params=params, timeout=timeout
            )
        except errors.CloudSyncError as exc:
            logger.debug(
                "CloudSync API %s %s failed: %s (attempt %d)", method, path, type(exc).__name__, attempt
            )
            # The frames below here (http.send, requests, urllib3) hold the headers in their
            # locals: error reports must not get to print them.
            _drop_tracebacks(exc)
            raise exc.with_traceback(None) from exc.__cause__
        logger.debug("CloudSync API %s %s -> %d (attempt %d)", method, path, response.status_code, attempt)
        return response

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number ``attempt``; ``None`` to give up now."""
        if retry_after is not None:
            # The server said when; waiting less would likely be refused again, and waiting
            # longer than a request can afford is worse than failing fast with RateLimited.
            return retry_after if retry_after <= conf.max_retry_after() else None
        delay = min(self.BACKOFF_CAP, self._backoff * 2.0 ** (attempt - 1))
        # Up to 10% jitter so clients that failed together do not retry in lockstep. Not a
        # security use of randomness.
        return delay + random.uniform(0, delay / 10)  # noqa: S311

    def _current_token(self) -> str:
        if self._token_source is None:
            assert self._secret is not None
            return self._secret
        return self._checked_token(self._token_source.get_access_token())

    @staticmethod
    def _checked_token(token: object) -> str:
        # A token source backed by a database can hand back anything; refuse it typed, and
        # before it reaches requests (whose error message would quote a bad header value).
        if not isinstance(token, str) or not _B64TOKEN.fullmatch(token):
            raise errors.InvalidResponse("The token source returned an unusable access token")
        return token

    def _url_for(self, path: str) -> str:
        """The absolute URL of ``path`` under the base URL, after checking both."""
        base = self.base_url.rstrip("/")
        scheme, host = _split_base_url(base)
        if scheme != "https" and not settings.DEBUG and not _is_loopback(host):
            raise errors.ConfigurationError(
                "CloudSync's API URL must use https:// (plain http is allowed only for loopback "
                "addresses or with DEBUG on)"
            )
        _check_path(path)
        url = base + path
        # Belt and braces: whatever the path was, the result must still be the same origin.
        parts = urlsplit(url)
        if parts.scheme != scheme or parts.netloc.lower() != urlsplit(base).netloc.lower():
            raise ValueError("path must stay on CloudSync's API host")
        return url


@sensitive_variables("key")
def app_client() -> CloudSync:
    """A client authenticated with the site's own API key (``CLOUDSYNC_API_KEY``, setting or
    environment variable); :class:`~errors.ConfigurationError` if there is none."""
    key = conf.api_key()
    if not key:
        raise errors.ConfigurationError(
            "No CloudSync API key: set CLOUDSYNC_API_KEY in the settings or the environment"
        )
    try:
        return CloudSync(api_key=key)
    except ValueError:
        raise errors.ConfigurationError("CLOUDSYNC_API_KEY is not a valid CloudSync API key") from None


# -- helpers ---------------------------------------------------------------------------------


def _normalize_timeout(value: float | tuple[float, float]) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        pair = (float(value), float(value))
    else:
        connect, read = value
        pair = (float(connect), float(read))
    if min(pair) <= 0:
        raise ValueError("timeout must be positive: no call may wait forever")
    return pair


def _split_base_url(base: str) -> tuple[str, str]:
    """(scheme, host) of an API base URL; :class:`errors.ConfigurationError` if it is unusable."""
    try:
        parts = urlsplit(base)
        host = parts.hostname or ""
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        raise errors.ConfigurationError("CloudSync's API URL is malformed") from None
    if parts.scheme not in ("https", "http") or not host:
        raise errors.ConfigurationError("CloudSync's API URL must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        # requests would turn user:password@ into Basic auth, replacing our Authorization header.
        raise errors.ConfigurationError("CloudSync's API URL must not contain credentials")
    if parts.query or parts.fragment:
        raise errors.ConfigurationError("CloudSync's API URL must not have a query or fragment")
    return parts.scheme, host


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_path(path: str) -> None:
    """Refuse anything but a relative API path such as ``/v1/files``: the token follows the URL."""
    if not isinstance(path, str):
        raise TypeError("path must be a string such as '/v1/files'")
    if not path.startswith("/") or path.startswith("//"):
        # "//host/x" is a scheme-relative URL: another host.
        raise ValueError("path must be a relative API path starting with '/', such as '/v1/files'")
    if "\\" in path or "#" in path or _CONTROL_CHARS.search(path) or any(c.isspace() for c in path):
        raise ValueError("path contains characters that are not allowed in an API path")
    parts = urlsplit(path)
    if parts.scheme or parts.netloc:
        raise ValueError("path must be relative to CloudSync's API, not an absolute URL")
    # Dot segments would climb out of a base URL's own path (a proxy prefix, say) to another
    # service on the same host; servers decode %2e too.
    if any(unquote(segment) in (".", "..") for segment in parts.path.split("/")):
        raise ValueError("path must not contain '.' or '..' segments")


def _display_url(base: str) -> str:
    """The base URL for people: scheme, host, port and path, never userinfo."""
    parts = urlsplit(base)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _drop_tracebacks(exc: BaseException) -> None:
    """Forget the frames of the exceptions chained under ``exc``.

    A network error's cause is a ``requests``/``urllib3`` exception whose traceback frames hold
    the request headers (the Authorization header) in their locals, and Django's error reports
    print the locals of every frame of every chained exception. The messages stay.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc.__cause__, exc.__context__]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        pending.extend((current.__cause__, current.__context__))


def _success_body(response: requests.Response) -> Any:
    if response.status_code in (204, 205) or not response.content.strip():
        return None
    return http.parse_json(response)


@sensitive_variables("token")
def _error_for(response: requests.Response, token: str, retry_after: float | None) -> errors.CloudSyncError:
    """The typed error for a non-2xx answer; reads CloudSync's error code defensively."""
    status = response.status_code
    code, description = _error_body(response)
    challenge = _bearer_challenge(response.headers.get("WWW-Authenticate", ""))
    code = code or _clean_code(challenge.get("error"))
    if code and token and token in code:
        code = None
    description = _scrub(description or challenge.get("error_description"), token)
    details: dict[str, Any] = {"status": status, "error": code, "description": description}
    if status == 401:
        return errors.NotAuthenticated(**details)
    if status == 403:
        scope = dialect.join_scope(dialect.split_scope(_scrub(challenge.get("scope"), token))) or None
        return errors.InsufficientScope(scope=scope, **details)
    if status == 429:
        return errors.RateLimited(retry_after=retry_after, **details)
    if status >= 500:
        return errors.ServerError(**details)
    # Other 4xx, and any 1xx/3xx (redirects are never followed: they could carry the
    # Authorization header to another host).
    return errors.APIError(f"CloudSync answered HTTP {status}", **details)


def _error_body(response: requests.Response) -> tuple[str | None, str | None]:
    """(error code, description) from a JSON error body; (None, None) for HTML, garbage, ..."""
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, None
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    description = body.get("error_description") or body.get("message")
    if isinstance(error, dict):  # {"error": {"code": ..., "message": ...}} is common elsewhere
        description = description or error.get("message")
        error = error.get("code")
    return _clean_code(error), description if isinstance(description, str) else None


def _clean_code(value: object) -> str | None:
    return value if isinstance(value, str) and _ERROR_CODE.fullmatch(value) else None


def _scrub(text: str | None, token: str) -> str | None:
    """Server-supplied text, made safe to show: no control characters, never the token."""
    if not text:
        return None
    text = _CONTROL_CHARS.sub(" ", text)
    # A server echoing the credential back must not put it into our exception messages.
    return text.replace(token, "[redacted]") if token else text


def _bearer_challenge(header: str) -> dict[str, str]:
    """The auth-params of a ``WWW-Authenticate: Bearer ...`` challenge (RFC 6750 §3)."""
    match = re.search(r"(?:^|,)\s*Bearer\b(.*)", header, flags=re.IGNORECASE)
    if not match:
        return {}
    params: dict[str, str] = {}
    for name, raw in _AUTH_PARAM.findall(match.group(1)):
        value = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
        params.setdefault(name.lower(), value)
    return params


def _retry_after(response: requests.Response) -> float | None:
    """``Retry-After`` in seconds (RFC 9110 §10.2.3: delay-seconds or an HTTP date), else ``None``."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT; "-0000" parses as naive
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


__all__ = ["IDEMPOTENT_METHODS", "CloudSync", "TokenSource", "app_client"]
