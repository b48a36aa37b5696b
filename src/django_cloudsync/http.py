"""The transport: one pooled HTTP session, and the rules every outbound call obeys.

One ``requests.Session`` per process keeps connections (and TLS sessions) alive across Django
requests and threads. Every call goes through :func:`send`, which always passes a timeout,
never follows redirects (a redirect could carry the ``Authorization`` header elsewhere), bounds
the size of the body it reads, and turns every ``requests`` failure into a typed error.
:func:`parse_json`, :func:`error_of` and :func:`retry_after` read what came back; the rules they
apply live in :mod:`~django_cloudsync.wire`, where an async transport finds them too.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter

from . import conf, errors, wire

_lock = threading.Lock()
_session: requests.Session | None = None

USER_AGENT = "django-cloudsync"


class Reply(Protocol):
    """What the readers below need of an answer, whichever transport got it."""

    @property
    def status_code(self) -> int: ...

    @property
    def content(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


class _NoRedirectSession(requests.Session):
    def get_redirect_target(self, resp: requests.Response) -> None:
        return None  # never follow one, and never let requests read a redirect's body unbounded


def get_session() -> requests.Session:
    """The process-wide pooled session, created on first use."""
    global _session
    if _session is None:
        with _lock:
            if _session is None:
                session = _NoRedirectSession()
                adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                session.headers["User-Agent"] = USER_AGENT
                # Credentials come only from our own Authorization header, never from ~/.netrc.
                session.trust_env = False
                _session = session
    return _session


def reset_session() -> None:
    """Drop the pooled session (its sockets must not be shared with a forked child)."""
    global _session, _lock
    _session = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reset_session)


def send(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    params: Mapping[str, Any] | None = None,
    timeout: tuple[float, float] | None = None,
) -> requests.Response:
    """Send one request and read its body, bounded; raise a typed error if that fails.

    The returned response's ``content`` is already read (at most
    ``CLOUDSYNC_MAX_RESPONSE_BYTES``), so the connection is back in the pool.
    """
    limit = conf.max_response_bytes()
    try:
        response = get_session().request(
            method,
            url,
            headers=dict(headers or {}),
            json=json_body,
            params=params,
            timeout=timeout or conf.timeout(),
            allow_redirects=False,
            stream=True,
        )
    except requests.Timeout as exc:
        raise errors.Timeout(_describe(errors.Timeout, exc)) from None
    except requests.RequestException as exc:
        raise errors.NetworkError(_describe(errors.NetworkError, exc)) from None
    try:
        body = bytearray()
        for chunk in response.iter_content(chunk_size=64 * 1024):
            body += chunk
            if len(body) > limit:
                response.close()
                raise errors.InvalidResponse(
                    "CloudSync sent a response larger than allowed", status=response.status_code
                )
        response._content = bytes(body)
    except requests.Timeout as exc:
        raise errors.Timeout(_describe(errors.Timeout, exc)) from None
    except requests.RequestException as exc:
        raise errors.NetworkError(_describe(errors.NetworkError, exc)) from None
    finally:
        response.close()
    return response


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


def _describe(kind: type[errors.CloudSyncError], exc: requests.RequestException) -> str:
    # Not chained (``from None``): the frames of requests, urllib3 and http.client below a
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
