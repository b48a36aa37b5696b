"""The policy of an API call, free of I/O: what may be sent where, and what each answer means.

:class:`~django_cloudsync.client.CloudSync` drives an :class:`ApiCall` over the sync transport;
its async twins drive the same :class:`ApiCall` over the async one, so both obey one set of
rules: the URL and HTTPS rules (:func:`api_url`), the headers, the time one call may take in all
(:attr:`ApiCall.deadline`), which answers are retried and after how long, when a user's token is
refreshed, and which typed error each answer becomes (:func:`error_for`). Nothing here sends,
sleeps or touches the database.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Mapping
from typing import Any, Final

from django.views.decorators.debug import sensitive_variables

from . import conf, dialect, errors, http, wire

logger = logging.getLogger("django_cloudsync")

#: Methods that may be sent twice without changing the outcome (RFC 9110 §9.2.2).
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: Longest wait between two retries computed from the backoff alone.
BACKOFF_CAP: Final = 5.0
DEFAULT_BACKOFF: Final = 0.2
#: The failures worth another attempt of an idempotent call.
RETRYABLE: Final = (errors.NetworkError, errors.RateLimited, errors.ServerError)


# -- before the first attempt ------------------------------------------------------------------


def api_url(base: str, path: str, *, debug: bool) -> str:
    """The absolute URL of ``path`` under ``base``, after checking both (a credential follows it)."""
    base = base.rstrip("/")
    scheme, host = wire.split_base_url(base)
    if scheme != "https" and not debug and not wire.is_loopback_host(host):
        raise errors.ConfigurationError(
            "CloudSync's API URL must use https:// (plain http is allowed only for loopback "
            "addresses or with DEBUG on)"
        )
    return wire.join_url(base, path)


def normalize_timeout(value: float | tuple[float, float]) -> tuple[float, float]:
    """A (connect, read) pair of positive seconds from one number or a pair."""
    if isinstance(value, (int, float)):
        pair = (float(value), float(value))
    else:
        connect, read = value
        pair = (float(connect), float(read))
    if min(pair) <= 0:
        raise ValueError("timeout must be positive: no call may wait forever")
    return pair


def checked_token(token: object) -> str:
    """``token`` if it can travel in a header; :class:`~.errors.InvalidResponse` otherwise."""
    # A token source backed by a database can hand back anything; refuse it typed, and before it
    # reaches the transport (whose error message would quote a bad header value).
    if not isinstance(token, str) or not dialect.TOKEN_PATTERN.fullmatch(token):
        raise errors.InvalidResponse("The token source returned an unusable access token")
    return token


# -- one call, attempt by attempt --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Answer:
    """The call is done: ``value`` is the parsed body of the 2xx answer."""

    value: Any


@dataclasses.dataclass(frozen=True)
class Wait:
    """The attempt failed in a way worth another: wait ``seconds``, then send it again."""

    seconds: float


class Refresh:
    """The user's token was rejected once: refresh it, then send the same request again."""


REFRESH: Final = Refresh()

#: What a driver does next, after :meth:`ApiCall.advance`.
Step = Answer | Wait | Refresh


class Credential:
    """A token held by a driver, which does not show itself in a ``repr``.

    Django's error reports print the locals of every frame; ``sensitive_variables`` hides them for
    sync functions, and for coroutines only from Django 5.0 on. The async driver keeps its token in
    one of these, so that an error report on Django 4.2 shows ``<Credential>``, not the token.
    """

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<Credential>"


class ApiCall:
    """One API call: what to send, and what each answer or failure means.

    A driver (the sync or the async one in :mod:`~django_cloudsync.client`) sends :attr:`url` with
    :meth:`headers` through a transport, bounded by :attr:`deadline`, and hands what came back (an
    answer, or the transport's typed error) to :meth:`advance`, which says what to do next: return
    the :class:`Answer`, :class:`Wait` and send again, :data:`REFRESH` the token and send again,
    or (raised) the typed error. The call never holds the credential: the driver passes it to
    each step.

    **One budget per call.** :attr:`deadline` (``CLOUDSYNC_DEADLINE`` unless given) starts when the
    call is made and is shared by every attempt and every wait between them: each attempt gets
    what is left of it, and a retry whose wait (backoff or ``Retry-After``) would use up what is
    left is not made; the failure is raised at once instead.
    """

    def __init__(
        self,
        method: str,
        path: str,
        *,
        url: str,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        timeout: tuple[float, float],
        max_retries: int,
        backoff: float = DEFAULT_BACKOFF,
        refreshable: bool = False,
        deadline: float | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.url = url
        self.params = params
        self.json_body = json_body
        self.timeout = timeout
        self.deadline = wire.Deadline(deadline if deadline is not None else conf.deadline())
        self.attempt = 0
        self._backoff = backoff
        self._retries_left = max_retries if method in IDEMPOTENT_METHODS else 0
        self._refreshable = refreshable

    @sensitive_variables("token")
    def headers(self, token: str) -> dict[str, str]:
        """The headers of the next attempt (attempts are counted here)."""
        self.attempt += 1
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    @sensitive_variables("token")
    def advance(self, outcome: http.Reply | errors.CloudSyncError, token: str) -> Step:
        """What to do after an attempt that got ``outcome``: an answer, or the transport's error.

        Raises the typed error when the call is over; its traceback starts here (the transport's
        frames, whose locals hold the request headers, are dropped).
        """
        if not isinstance(outcome, errors.CloudSyncError):
            try:
                return self.on_answer(outcome, token)
            except RETRYABLE as exc:
                outcome = exc
        else:
            self.on_failure(outcome)
            http.drop_tracebacks(outcome)
        if isinstance(outcome, RETRYABLE):
            delay = self.retry_delay(outcome)
            if delay is not None:
                return Wait(delay)
        raise outcome.with_traceback(None) from outcome.__cause__

    @sensitive_variables("token")
    def on_answer(self, response: http.Reply, token: str) -> Answer | Refresh:
        """What an answer means: the body, a refresh to try, or (raised) the typed error."""
        status = response.status_code
        logger.debug("CloudSync API %s %s -> %d (attempt %d)", self.method, self.path, status, self.attempt)
        if 200 <= status < 300:
            return Answer(success_body(response))
        if status == 401 and self._refreshable:
            # A 401 to a user's token: it expired or was revoked early. The request was not
            # executed, so repeating it is safe for any method. Refresh once (a failing refresh
            # raises its own error); a second 401 is final.
            logger.debug("CloudSync API %s %s: token rejected, refreshing it", self.method, self.path)
            self._refreshable = False
            return REFRESH
        raise error_for(response, token)

    def on_failure(self, failure: errors.CloudSyncError) -> None:
        """The transport failed this attempt (logged by type only: messages may quote a URL)."""
        logger.debug(
            "CloudSync API %s %s failed: %s (attempt %d)",
            self.method,
            self.path,
            type(failure).__name__,
            self.attempt,
        )

    def retry_delay(self, failure: errors.CloudSyncError) -> float | None:
        """Seconds to wait before trying again after ``failure``; ``None`` to raise it."""
        if self._retries_left <= 0:
            return None
        # RateLimited and ServerError carry the answer's Retry-After; a network error has none.
        delay = backoff_delay(self.attempt, self._backoff, getattr(failure, "retry_after", None))
        if delay is None or not self.deadline.schedule_wait(delay):
            return None  # waiting would leave no time for the attempt after it
        self._retries_left -= 1
        logger.debug("CloudSync API %s %s: retrying in %.2fs", self.method, self.path, delay)
        return delay


def backoff_delay(attempt: int, backoff: float, retry_after: float | None) -> float | None:
    """Seconds to wait before retry number ``attempt``; ``None`` to give up now."""
    if retry_after is not None:
        # The server said when; waiting less would likely be refused again, and waiting longer
        # than a request can afford is worse than failing fast with RateLimited.
        return retry_after if retry_after <= conf.max_retry_after() else None
    delay = min(BACKOFF_CAP, backoff * 2.0 ** (attempt - 1))
    # Up to 10% jitter so clients that failed together do not retry in lockstep. Not a security
    # use of randomness.
    return delay + random.uniform(0, delay / 10)  # noqa: S311


# -- what the answers mean ---------------------------------------------------------------------


def success_body(response: http.Reply) -> Any:
    """The parsed JSON body of a 2xx answer; ``None`` if it has none."""
    if response.status_code in (204, 205) or not response.content.strip():
        return None
    return http.parse_json(response)


@sensitive_variables("token")
def error_for(response: http.Reply, token: str) -> errors.CloudSyncError:
    """The typed error for a non-2xx answer; reads CloudSync's error code defensively."""
    status = response.status_code
    body = http.error_of(response, secrets=[token])
    details: dict[str, Any] = {"status": status, "error": body.error, "description": body.description}
    if status == 401:
        return errors.NotAuthenticated(**details)
    if status == 403:
        scope = dialect.join_scope(dialect.split_scope(body.scope)) or None
        return errors.InsufficientScope(scope=scope, **details)
    if status == 429:
        return errors.RateLimited(retry_after=http.retry_after(response), **details)
    if status >= 500:
        return errors.ServerError(retry_after=http.retry_after(response), **details)
    # Other 4xx, and any 1xx/3xx (redirects are never followed: they could carry the
    # Authorization header to another host).
    return errors.APIError(f"CloudSync answered HTTP {status}", **details)


def me_from(data: Any) -> dict[str, Any]:
    """The ``GET /v1/me`` answer, checked: it always has a string ``id``."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
        raise errors.InvalidResponse("CloudSync's /v1/me answer has no account id")
    return data


def workspaces_from(data: Any) -> list[dict[str, Any]]:
    """The ``GET /v1/workspaces`` answer, checked: a list of objects."""
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise errors.InvalidResponse("CloudSync's /v1/workspaces answer is not a list of objects")
    return items
