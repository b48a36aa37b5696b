"""The CloudSync API client, shaped like CloudSync's own SDK.

::

    CloudSync(api_key="sk_test_...")        # server-to-server, the account owner's key
    CloudSync(access_token="at_test_...")   # a bare OAuth access token
    CloudSync(token_source=source)          # a user's stored token, refreshed as needed

Every call has an async twin on the same object, named the Django way (``await client.ame()``,
``aworkspaces()``, ``aget()``, ``apost()``, ``aput()``, ``apatch()``, ``adelete()``). A sync call
goes through :func:`django_cloudsync.http.send` (one pooled ``requests`` session per process), an
async one through :func:`django_cloudsync.http.asend` (one pooled ``httpx2.AsyncClient`` per event
loop); both transports keep the same bounds (timeouts, a total deadline, bounded bodies, no
redirects), and both drivers below drive the same :class:`~django_cloudsync.policy.ApiCall`: the policy
that decides where a credential may go (only to the configured API host, over HTTPS unless it is
a loopback address or ``DEBUG`` is on, only in the ``Authorization`` header), maps CloudSync's
answers to :mod:`~django_cloudsync.errors`, retries idempotent calls with backoff, and refreshes
a rejected user token once, all within one ``CLOUDSYNC_DEADLINE`` per call. This module holds
the configuration, the calls, and the two drivers (which only send, sleep and refresh: every
decision is the policy's).

Secrets never leave through ``repr()``, logs, exception messages or Django's error reports:
the functions whose locals hold one are marked with ``sensitive_variables``, and network errors
lose the library frames (whose locals hold the request headers) before they reach a caller.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol, runtime_checkable

from asgiref.sync import sync_to_async
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from . import conf, dialect, errors, http, policy, wire

#: The sleep between retries. Module-level and looked up at call time so tests can replace it
#: (or pass ``sleep=`` to :class:`CloudSync`) to run fast and count the waits.
_sleep: Callable[[float], None] = time.sleep
#: The async twins' sleep between retries (never a blocking one in the event loop); replaceable alike.
_asleep: Callable[[float], Awaitable[None]] = asyncio.sleep


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


@runtime_checkable
class AsyncTokenSource(TokenSource, Protocol):
    """A token source with async twins, which the client's async calls await instead.

    The twins must not block the event loop. A source without them still works with the async
    calls: its sync methods then run in a worker thread (``sync_to_async(thread_sensitive=False)``).
    """

    async def aget_access_token(self) -> str:
        """:meth:`TokenSource.get_access_token`, awaitable."""
        ...

    async def arefresh_after_rejection(self, rejected_token: str) -> str:
        """:meth:`TokenSource.refresh_after_rejection`, awaitable."""
        ...


class CloudSync:
    """A client for CloudSync's API. Give exactly one of ``api_key``, ``access_token``, ``token_source``.

    ``base_url``, ``timeout``, ``max_retries`` and ``deadline`` (seconds one call may take in all,
    retries included) default to the settings, read at call time. ``backoff`` is the first retry's
    delay in seconds (doubled per retry, capped at :attr:`BACKOFF_CAP`); ``sleep`` replaces
    ``time.sleep`` between retries, and ``asleep`` the async twins' ``asyncio.sleep``.
    """

    #: Longest wait between two retries computed from the backoff alone.
    BACKOFF_CAP: Final = policy.BACKOFF_CAP
    DEFAULT_BACKOFF: Final = policy.DEFAULT_BACKOFF

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
        asleep: Callable[[float], Awaitable[None]] | None = None,
        deadline: float | None = None,
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
            # Anything but a b64token cannot be sent in a header safely (and requests' own
            # complaint about a bad header value would quote the value, i.e. the secret).
            if not isinstance(secret, str) or not dialect.TOKEN_PATTERN.fullmatch(secret):
                # Never echo the value: it is a secret even when it is malformed.
                raise ValueError(f"{self._kind} must be a non-empty token of printable characters")
            self._secret = secret
        elif not callable(getattr(token_source, "get_access_token", None)) or not callable(
            getattr(token_source, "refresh_after_rejection", None)
        ):
            raise TypeError("token_source must implement get_access_token() and refresh_after_rejection()")

        if base_url is not None:
            base_url = base_url.rstrip("/")
            wire.split_base_url(base_url)  # fail fast on a malformed explicit URL
        self._base_url = base_url
        self._timeout = policy.normalize_timeout(timeout) if timeout is not None else None
        if max_retries is not None and (not isinstance(max_retries, int) or max_retries < 0):
            raise ValueError("max_retries must be a non-negative integer")
        self._max_retries = max_retries
        if backoff is not None and backoff < 0:
            raise ValueError("backoff must not be negative")
        self._backoff = self.DEFAULT_BACKOFF if backoff is None else float(backoff)
        self._sleep_fn = sleep
        self._asleep_fn = asleep
        if deadline is not None and not deadline > 0:
            raise ValueError("deadline must be a positive number of seconds")
        self._deadline = deadline

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
    def deadline(self) -> float:
        """Seconds one call may take in all: every attempt, and the waits between them."""
        return self._deadline if self._deadline is not None else conf.deadline()

    @property
    def max_retries(self) -> int:
        """How many times an idempotent call is retried after 429, 5xx or a network error."""
        return self._max_retries if self._max_retries is not None else conf.max_retries()

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
            where = wire.display_url(self.base_url)
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
        return policy.me_from(self.get(dialect.ME_PATH))

    def workspaces(self) -> list[dict[str, Any]]:
        """``GET /v1/workspaces``: the workspaces (needs ``workspaces:read``)."""
        return policy.workspaces_from(self.get(dialect.WORKSPACES_PATH))

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """``GET`` a relative API path; the parsed JSON body (``None`` if empty)."""
        return self._request(self._call("GET", path, params=params))

    def post(self, path: str, json: Any = None) -> Any:
        """``POST`` JSON to a relative API path. Never retried (it may not be idempotent)."""
        return self._request(self._call("POST", path, json_body=json))

    def put(self, path: str, json: Any = None) -> Any:
        """``PUT`` JSON to a relative API path."""
        return self._request(self._call("PUT", path, json_body=json))

    def patch(self, path: str, json: Any = None) -> Any:
        """``PATCH`` JSON to a relative API path. Never retried (it may not be idempotent)."""
        return self._request(self._call("PATCH", path, json_body=json))

    def delete(self, path: str) -> Any:
        """``DELETE`` a relative API path."""
        return self._request(self._call("DELETE", path))

    # -- the async twins ------------------------------------------------------------------

    async def ame(self) -> dict[str, Any]:
        """:meth:`me`, awaitable."""
        return policy.me_from(await self.aget(dialect.ME_PATH))

    async def aworkspaces(self) -> list[dict[str, Any]]:
        """:meth:`workspaces`, awaitable."""
        return policy.workspaces_from(await self.aget(dialect.WORKSPACES_PATH))

    async def aget(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """:meth:`get`, awaitable."""
        return await self._arequest(self._call("GET", path, params=params))

    async def apost(self, path: str, json: Any = None) -> Any:
        """:meth:`post`, awaitable. Never retried."""
        return await self._arequest(self._call("POST", path, json_body=json))

    async def aput(self, path: str, json: Any = None) -> Any:
        """:meth:`put`, awaitable."""
        return await self._arequest(self._call("PUT", path, json_body=json))

    async def apatch(self, path: str, json: Any = None) -> Any:
        """:meth:`patch`, awaitable. Never retried."""
        return await self._arequest(self._call("PATCH", path, json_body=json))

    async def adelete(self, path: str) -> Any:
        """:meth:`delete`, awaitable."""
        return await self._arequest(self._call("DELETE", path))

    # -- the machinery: two drivers of one policy.ApiCall --------------------------------

    def _call(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json_body: Any = None
    ) -> policy.ApiCall:
        """The policy of one call, its URL checked before any credential moves."""
        return policy.ApiCall(
            method,
            path,
            url=policy.api_url(self.base_url, path, debug=settings.DEBUG),
            params=params,
            json_body=json_body,
            timeout=self.timeout,
            max_retries=self.max_retries,
            backoff=self._backoff,
            refreshable=self._token_source is not None,
            deadline=self.deadline,
        )

    @sensitive_variables("token")
    def _request(self, call: policy.ApiCall) -> Any:
        token = self._current_token()
        while not isinstance(step := call.advance(self._send(call, token), token), policy.Answer):
            if isinstance(step, policy.Wait):
                (self._sleep_fn if self._sleep_fn is not None else _sleep)(step.seconds)
            else:  # only a token source's call asks for a refresh
                token = policy.checked_token(self._source().refresh_after_rejection(token))
        return step.value

    @sensitive_variables("token")
    def _send(self, call: policy.ApiCall, token: str) -> http.Reply | errors.CloudSyncError:
        """One attempt through the pooled session: the answer, or the transport's typed error."""
        try:
            return http.send(call.outgoing(token))
        except errors.CloudSyncError as exc:
            return exc

    @sensitive_variables("credential")
    async def _arequest(self, call: policy.ApiCall) -> Any:
        # The token only ever in a Credential here (see policy.Credential): a coroutine's locals.
        credential = policy.Credential(await self._acurrent_token())
        while not isinstance(
            step := call.advance(await self._asend(call, credential), credential.value), policy.Answer
        ):
            if isinstance(step, policy.Wait):
                await (self._asleep_fn if self._asleep_fn is not None else _asleep)(step.seconds)
            else:
                credential = policy.Credential(await self._arefreshed_token(credential))
        return step.value

    @sensitive_variables("credential")
    async def _asend(
        self, call: policy.ApiCall, credential: policy.Credential
    ) -> http.Reply | errors.CloudSyncError:
        """One attempt through this event loop's pooled client."""
        try:
            return await http.asend(call.outgoing(credential.value))
        except errors.CloudSyncError as exc:
            return exc

    def _source(self) -> TokenSource:
        assert self._token_source is not None
        return self._token_source

    def _current_token(self) -> str:
        if self._token_source is None:
            assert self._secret is not None
            return self._secret
        return policy.checked_token(self._token_source.get_access_token())

    async def _acurrent_token(self) -> str:
        source = self._token_source
        if source is None:
            assert self._secret is not None
            return self._secret
        if isinstance(source, AsyncTokenSource):
            return policy.checked_token(await source.aget_access_token())
        # No async twin: the sync method (database, HTTP) runs in a worker thread, never in the loop.
        return policy.checked_token(await sync_to_async(source.get_access_token, thread_sensitive=False)())

    @sensitive_variables("credential")
    async def _arefreshed_token(self, credential: policy.Credential) -> str:
        source = self._source()
        if isinstance(source, AsyncTokenSource):
            return policy.checked_token(await source.arefresh_after_rejection(credential.value))
        refresh = sync_to_async(source.refresh_after_rejection, thread_sensitive=False)
        return policy.checked_token(await refresh(credential.value))


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


IDEMPOTENT_METHODS = policy.IDEMPOTENT_METHODS

__all__ = ["IDEMPOTENT_METHODS", "AsyncTokenSource", "CloudSync", "TokenSource", "app_client"]
