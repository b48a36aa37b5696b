"""The transports: one pooled HTTP client per process (sync) and per event loop (async), and the
rules every outbound call obeys while it moves bytes.

The sync transport is one ``requests.Session`` per process, which keeps connections (and TLS
sessions) alive across Django requests and threads; the async one is one ``httpx2.AsyncClient`` per
event loop, closed when the loop ends (``asyncio.run``, asgiref's ``async_to_sync`` and ASGI
servers all shut a loop down that way) or by :func:`aclose`. :func:`send` and :func:`asend` do the
same thing: always a timeout, never a redirect (it could carry the ``Authorization`` header
elsewhere), a :class:`~django_cloudsync.wire.Deadline` for the whole exchange (connect, headers,
body: each read waits at most ``min(read timeout, time left)``), the body read raw and bounded by a
:class:`~django_cloudsync.wire.BoundedBody` before and after decoding, and every library failure
turned into a typed error. :func:`parse_json`, :func:`error_of` and :func:`retry_after` read what
came back; the rules they apply live in :mod:`~django_cloudsync.wire`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib
import json
import os
import ssl
import threading
import weakref
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any, Protocol

import certifi
import httpx2
import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from . import conf, errors, wire

_lock = threading.Lock()
_session: requests.Session | None = None

USER_AGENT = "django-cloudsync"
#: How much one read asks for; a slow server hands over less, and the clock is read in between.
CHUNK_BYTES = 64 * 1024
#: The headers every request starts with, on both transports.
BASE_HEADERS: Mapping[str, str] = {"User-Agent": USER_AGENT, "Accept-Encoding": wire.ACCEPT_ENCODING}


class Reply(Protocol):
    """What the readers below need of an answer, whichever transport got it."""

    @property
    def status_code(self) -> int: ...

    @property
    def content(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


@dataclasses.dataclass(frozen=True)
class Received:
    """An answer, read in full: its status, its (case-insensitive) headers and its decoded body."""

    status_code: int
    headers: Mapping[str, str] = dataclasses.field(repr=False)
    content: bytes = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class Outgoing:
    """One request to send, for either transport; its ``repr`` shows neither headers nor body.

    ``timeout`` is the (connect, read) pair of each wait (``CLOUDSYNC_TIMEOUT`` if ``None``);
    ``deadline`` bounds the whole exchange (``CLOUDSYNC_DEADLINE`` from when it is sent if ``None``).
    """

    method: str
    url: str
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    json_body: Any = dataclasses.field(default=None, repr=False)
    params: Mapping[str, Any] | None = dataclasses.field(default=None, repr=False)
    timeout: tuple[float, float] | None = None
    deadline: wire.Deadline | None = None

    def bounds(self) -> tuple[wire.Deadline, float, float]:
        """The deadline, and the connect and read timeouts, each already bounded by it."""
        deadline = self.deadline or wire.Deadline(conf.deadline())
        connect, read = self.timeout or conf.timeout()
        return deadline, deadline.bound(connect), deadline.bound(read)


# -- the sync transport -----------------------------------------------------------------------


class _NoRedirectSession(requests.Session):
    def get_redirect_target(self, resp: requests.Response) -> None:
        return None  # never follow one, and never let requests read a redirect's body unbounded


def get_session() -> requests.Session:
    """The process-wide pooled session, created on first use."""
    global _session
    # Always under the lock (an uncontended lock costs nothing next to an HTTP exchange): two
    # threads' first calls get one session, never two pools.
    with _lock:
        if _session is None:
            session = _NoRedirectSession()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.headers.update(BASE_HEADERS)
            # Credentials come only from our own Authorization header, never from ~/.netrc.
            session.trust_env = False
            _session = session
        return _session


def reset_session() -> None:
    """Drop the pooled session (its sockets must not be shared with a forked child)."""
    global _session, _lock
    _session = None
    _lock = threading.Lock()


def send(outgoing: Outgoing) -> Received:
    """Send one request and read its body, bounded in time and size; raise a typed error if that fails.

    The connection is back in the pool when this returns, and closed if the body was not read to
    its end.
    """
    deadline, connect, read = outgoing.bounds()
    try:
        response = get_session().request(
            outgoing.method,
            outgoing.url,
            headers=dict(outgoing.headers),
            json=outgoing.json_body,
            params=outgoing.params,
            # The read timeout also bounds the wait for the status line and headers.
            timeout=(connect, read),
            allow_redirects=False,
            stream=True,
        )
    except requests.Timeout as exc:
        raise errors.Timeout(_describe(errors.Timeout, exc)) from None
    except requests.RequestException as exc:
        raise errors.NetworkError(_describe(errors.NetworkError, exc)) from None
    raw = response.raw  # urllib3's response: read undecoded, so that the bound applies first
    finished = False
    try:
        body = _bounded_body(response.status_code, response.headers)
        sock = getattr(raw.connection, "sock", None)
        while True:
            per_read = deadline.bound(read)  # each read: at most what is left
            if sock is not None:
                sock.settimeout(per_read)
            chunk = raw.read1(CHUNK_BYTES, decode_content=False)
            if not chunk:
                break
            body.feed(chunk)
        content = body.content()
        finished = True
    except (urllib3.exceptions.TimeoutError, TimeoutError) as exc:
        raise errors.Timeout(_describe(errors.Timeout, exc)) from None
    except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
        raise errors.NetworkError(_describe(errors.NetworkError, exc)) from None
    finally:
        if not finished:
            raw.close()  # what is left of the body would be read as the next answer
        raw.release_conn()
    return Received(response.status_code, response.headers, content)


# -- the async transport ----------------------------------------------------------------------


@dataclasses.dataclass
class _LoopPool:
    client: httpx2.AsyncClient
    #: An async generator the loop tracks: ``loop.shutdown_asyncgens()`` closes the client.
    closer: AsyncGenerator[None, None]


_async_lock = threading.Lock()
_async_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPool] = weakref.WeakKeyDictionary()
#: The async transport's TLS context, built once per process (see :func:`_async_ssl_context`).
_ssl_context: ssl.SSLContext | None = None
#: Per event loop, the build of that context under way, which the loop's other first calls await.
_ssl_context_builds: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Future[ssl.SSLContext]] = (
    weakref.WeakKeyDictionary()
)
#: What httpx2 imports lazily on a client's construction and first connection (httpcore2, h11,
#: anyio's asyncio backend and TLS streams: tens of ms the first time).
_LAZY_MODULES = ("httpcore2", "h11", "anyio._backends._asyncio", "anyio.streams.tls")


async def _async_ssl_context() -> ssl.SSLContext:
    """The process's TLS context for the async client; its first use builds it in a worker thread.

    Loading the CA bundle takes tens of ms, and httpx2 would do it for every new client (so every
    new event loop) inside the loop; httpx2's lazy imports on the first client and the first
    connection take as long again. Both happen once per process, in a thread, so the loop keeps
    running meanwhile; sync-only sites and management commands never pay for them. The first
    calls of one loop all await the one build (a burst of 100 coroutines on a new worker would
    otherwise queue 100 builds on the executor's threads, which then hold the GIL from the loop);
    two loops' first calls may both build it: the same work, one of the results kept.
    """
    global _ssl_context
    context = _ssl_context
    if context is not None:
        return context
    loop = asyncio.get_running_loop()
    with _async_lock:
        build = _ssl_context_builds.get(loop)
        if build is None:
            build = _ssl_context_builds[loop] = loop.run_in_executor(None, _prepare_async_transport)
            build.add_done_callback(functools.partial(_ssl_context_built, loop))
    # shield: a first call that is cancelled leaves the build to the others.
    context = _ssl_context = await asyncio.shield(build)
    return context


def _ssl_context_built(loop: asyncio.AbstractEventLoop, build: asyncio.Future[ssl.SSLContext]) -> None:
    with _async_lock:
        del _ssl_context_builds[loop]  # a failed build is tried again by the next call
    # Retrieved here: if every call awaiting it was cancelled, asyncio would log a failure as
    # never retrieved. (Nothing cancels the build itself: every caller awaits it shielded.)
    build.cancelled() or build.exception()


def _prepare_async_transport() -> ssl.SSLContext:
    for module in _LAZY_MODULES:
        importlib.import_module(module)
    # certifi's CA bundle, the one requests verifies the sync session's connections with, so both
    # transports trust the same authorities; none from the environment (SSL_CERT_FILE), like the
    # sync session.
    return ssl.create_default_context(cafile=certifi.where())


def _open_client_of(loop: asyncio.AbstractEventLoop) -> httpx2.AsyncClient | None:
    """``loop``'s pooled client, if it has one that is still open."""
    with _async_lock:
        pool = _async_pools.get(loop)
    return pool.client if pool is not None and not pool.client.is_closed else None


async def get_async_client() -> httpx2.AsyncClient:
    """This event loop's pooled ``httpx2.AsyncClient``, created on first use."""
    loop = asyncio.get_running_loop()
    client = _open_client_of(loop)
    if client is not None:
        return client
    context = await _async_ssl_context()
    # Another coroutine of this loop may have created the client while this one awaited the
    # context: from here to the registration below nothing suspends, so one loop gets one pool.
    client = _open_client_of(loop)
    if client is not None:
        return client
    size = conf.async_max_connections()
    client = httpx2.AsyncClient(
        headers=dict(BASE_HEADERS),
        follow_redirects=False,
        verify=context,
        # No proxy, netrc or CA bundle from the environment: like the sync session.
        trust_env=False,
        limits=httpx2.Limits(max_connections=size, max_keepalive_connections=size),
    )
    closer = _close_when_the_loop_ends(client)
    # Runs to its first yield without suspending (so no other task can get here in between); from
    # now on the loop tracks the generator, and asyncio.run() closes it before closing the loop.
    await closer.asend(None)
    with _async_lock:
        _async_pools[loop] = _LoopPool(client, closer)
    return client


async def _close_when_the_loop_ends(client: httpx2.AsyncClient) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.aclose()
        loop = asyncio.get_running_loop()
        with _async_lock:
            pool = _async_pools.get(loop)
            if pool is not None and pool.client is client:
                del _async_pools[loop]


async def aclose() -> None:
    """Close this event loop's pooled async client (for tests, or a loop you close yourself)."""
    with _async_lock:
        pool = _async_pools.get(asyncio.get_running_loop())
    if pool is not None:
        await pool.closer.aclose()


def _forget_async_pools() -> None:
    global _async_lock
    _async_pools.clear()  # a forked child must not share the parent's sockets
    _ssl_context_builds.clear()
    _async_lock = threading.Lock()


async def asend(outgoing: Outgoing) -> Received:
    """:func:`send` on this event loop's pooled ``httpx2.AsyncClient``: the same bounds, the same errors."""
    deadline, connect, read = outgoing.bounds()
    try:
        # The loop's first call builds the TLS context: an unreadable CA bundle is an OSError.
        client = await get_async_client()
        request = client.build_request(
            outgoing.method,
            outgoing.url,
            headers=dict(outgoing.headers),
            json=outgoing.json_body,
            params=dict(outgoing.params) if outgoing.params is not None else None,
            timeout=httpx2.Timeout(connect=connect, read=read, write=read, pool=connect),
        )
        # Each read waits at most min(read, time left) (the timeouts above); the whole exchange is
        # cancelled when the deadline passes, however the bytes trickle in.
        return await asyncio.wait_for(_aexchange(client, request), deadline.bound(deadline.seconds))
    except (asyncio.TimeoutError, httpx2.TimeoutException) as exc:
        raise errors.Timeout(_describe(errors.Timeout, exc)) from None
    except (httpx2.HTTPError, httpx2.InvalidURL, OSError) as exc:
        raise errors.NetworkError(_describe(errors.NetworkError, exc)) from None


async def _aexchange(client: httpx2.AsyncClient, request: httpx2.Request) -> Received:
    response = await client.send(request, stream=True)
    try:
        body = _bounded_body(response.status_code, response.headers)
        async for chunk in response.aiter_raw(CHUNK_BYTES):  # undecoded: the bound applies first
            body.feed(chunk)
        return Received(response.status_code, response.headers, body.content())
    finally:
        await response.aclose()  # an unfinished body closes the connection instead of pooling it


# -- both -------------------------------------------------------------------------------------


def _bounded_body(status: int, headers: Mapping[str, str]) -> wire.BoundedBody:
    return wire.BoundedBody(
        headers.get("Content-Encoding"),
        conf.max_response_bytes(),
        content_length=headers.get("Content-Length"),
        status=status,
    )


# os.register_at_fork exists on every POSIX Python, and only there can a process fork; the tox
# matrix and CI are POSIX, so the other side of this branch (Windows) is never taken.
if hasattr(os, "register_at_fork"):  # pragma: no branch
    os.register_at_fork(after_in_child=reset_session)
    os.register_at_fork(after_in_child=_forget_async_pools)


def parse_json(response: Reply) -> Any:
    """The response's JSON body; :class:`~django_cloudsync.errors.InvalidResponse` if it is not JSON."""
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise errors.InvalidResponse("CloudSync did not answer with JSON", status=response.status_code)
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise errors.InvalidResponse("CloudSync sent invalid JSON", status=response.status_code) from None


def error_of(response: Reply, secrets: Iterable[str] = ()) -> wire.ErrorBody:
    """The error code, description and challenge scope of a non-2xx answer, read once.

    ``secrets`` are the credentials the request carried: none of them survives in the result.
    """
    return wire.parse_error(response.content, response.headers.get("WWW-Authenticate", ""), secrets)


def retry_after(response: Reply) -> float | None:
    """The answer's ``Retry-After`` in seconds, or ``None``."""
    return wire.retry_after_seconds(response.headers.get("Retry-After", ""))


def _describe(kind: type[errors.CloudSyncError], exc: BaseException) -> str:
    # Not chained (``from None``): the frames of requests, urllib3, httpx2 and http.client below a
    # network error hold the raw request, Authorization header and JSON body included, in their
    # local variables, and Django's error reports print those. Name the failure instead.
    return f"{kind.default_message} ({type(exc).__name__})"


def drop_tracebacks(exc: BaseException) -> None:
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
