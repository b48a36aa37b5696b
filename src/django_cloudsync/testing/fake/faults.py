"""The switches that make the fake CloudSync misbehave on purpose: faults and delays.

A **fault** switch (``fail_next``, ``fail_always``, ``respond_next``, or ``POST /_fake/faults``)
answers the next requests to an endpoint wrongly instead of with the real answer; each one counts
in ``faults_injected``. A **delay** switch (``delay_next``, ``delay_always``, or
``POST /_fake/delays``) lets the answer, real or faulty, arrive late: held back for some seconds
("stall"), or sent at once but its body one small chunk at a time ("drip"); each one counts in
``delayed_answers``. Switches queue per endpoint and are served in the order they were set,
``"me"`` and ``"workspaces"`` ones before ``"api"`` ones (which match any ``/v1`` path).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final, TypeVar

from django_cloudsync import dialect

from .wsgi import Response, api_error, html_response, json_response, oauth_error

#: Where a fault can be injected: the token endpoint, any ``/v1`` path, or one API path.
FAULT_ENDPOINTS: Final = ("token", "api", "me", "workspaces")
#: What an injected fault looks like to the client.
FAULT_KINDS: Final = (
    "server_error",
    "bad_gateway",
    "timeout",
    "invalid_json",
    "html",
    "rate_limited",
    "invalid_grant",
    "malformed_profile",
    "gzip_bomb",
)
#: The fault kind of an answer scripted with :meth:`FaultSwitches.respond_next` (it carries its own
#: response, so it is not one of ``FAULT_KINDS``).
SCRIPTED: Final = "scripted"
DEFAULT_TIMEOUT_DELAY: Final = 3.0
#: The longest a delay switch holds an answer back (seconds): a delayed test still ends.
MAX_DELAY: Final = 30.0
#: A dripped body leaves in chunks of at most this many bytes, spread evenly over the delay.
DRIP_CHUNK_BYTES: Final = 8
#: What a ``gzip_bomb`` answer inflates to (valid JSON, mostly whitespace); on the wire it is about
#: a thousandth of that, so a client must bound what it inflates, not only what it receives.
GZIP_BOMB_BYTES: Final = 16 * 1024 * 1024

#: The API's versioned root (``/v1/``), derived from the dialect rather than restated.
API_ROOT: Final = dialect.ME_PATH.rsplit("/", 1)[0] + "/"

_SERVER_ERROR: Final = "server_error"
_RATE_LIMITED: Final = "rate_limited"
_BAD_GATEWAY_PAGE: Final = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center></body></html>\n"
)
_GATEWAY_TIMEOUT_PAGE: Final = (
    b"<html><head><title>504 Gateway Time-out</title></head>"
    b"<body><center><h1>504 Gateway Time-out</h1></center></body></html>\n"
)
_MAINTENANCE_PAGE: Final = (
    b'<!DOCTYPE html><html lang="en"><head><title>CloudSync is down for maintenance</title></head>'
    b"<body><h1>We'll be right back</h1></body></html>\n"
)
_TRUNCATED_JSON: Final = b'{"data": [{"id": "ws_'
#: RFC 9110 §5.6.2 ``token``: what a header name may be made of.
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Headers the server frames a response with: a scripted one would contradict the real body and
#: break the keep-alive connection for the requests after it.
_FRAMING_HEADERS: Final = frozenset({"content-length", "transfer-encoding", "connection"})


@dataclass
class Fault:
    kind: str
    retry_after: int | str | None
    #: How many more requests this fault answers; ``None`` means until cleared.
    remaining: int | None
    #: The exact answer of a ``SCRIPTED`` fault (see ``respond_next``); ``None`` for the named kinds.
    response: Response | None = None


@dataclass
class Delay:
    #: How long the answer takes: a stall before it, or the whole body's drip.
    seconds: float
    drip: bool
    #: How many more answers this delay holds back; ``None`` means until cleared.
    remaining: int | None


_SwitchT = TypeVar("_SwitchT", Fault, Delay)


def switch_endpoints(path: str) -> tuple[str, ...]:
    """The endpoints whose switches a request to ``path`` answers to, the most specific first:
    ``"me"`` and ``"workspaces"`` switches come before ``"api"`` ones (which match any ``/v1`` path).
    """
    if path == dialect.TOKEN_PATH:
        return ("token",)
    if not path.startswith(API_ROOT):
        return ()
    specific = {dialect.ME_PATH: "me", dialect.WORKSPACES_PATH: "workspaces"}.get(path)
    return (specific, "api") if specific else ("api",)


def check_endpoint(endpoint: str) -> None:
    if endpoint not in FAULT_ENDPOINTS:
        raise ValueError(f"endpoint must be one of {', '.join(FAULT_ENDPOINTS)}")


def _check_times(times: object) -> None:
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise ValueError("times must be a positive integer")


def _take_first(queues: dict[str, deque[_SwitchT]], endpoints: Iterable[str]) -> _SwitchT | None:
    """Consume one use of the first switch of the first of ``endpoints`` that has one (call it
    under the lock); returns a copy, so the caller may read it outside the lock."""
    for endpoint in endpoints:
        queue = queues[endpoint]
        if not queue:
            continue
        switch = queue[0]
        if switch.remaining is not None:
            switch.remaining -= 1
            if switch.remaining <= 0:
                queue.popleft()
        return dataclasses.replace(switch)
    return None


def delayed_body(body: bytes, delay: Delay | None) -> Iterable[bytes]:
    """The body of an answer as ``delay`` lets it leave: at once, after a stall, or dripped.

    A drip is a generator: a server that writes each chunk as it comes (as
    :class:`~django_cloudsync.testing.server.FakeCloudSyncServer` does) sends the headers at once,
    then ``DRIP_CHUNK_BYTES`` at a time with an even pause before each chunk, ``delay.seconds``
    in all. Either way the bytes are exactly the undelayed answer's.
    """
    if delay is None:
        return [body]
    if not delay.drip:
        time.sleep(delay.seconds)
        return [body]
    return _drip(body, delay.seconds)


def _drip(body: bytes, seconds: float) -> Iterator[bytes]:
    chunks = [body[start : start + DRIP_CHUNK_BYTES] for start in range(0, len(body), DRIP_CHUNK_BYTES)]
    chunks = chunks or [b""]  # an empty body still takes its time
    pause = seconds / len(chunks)
    for chunk in chunks:
        time.sleep(pause)
        yield chunk


@functools.cache
def _gzip_bomb() -> bytes:
    """``GZIP_BOMB_BYTES`` of JSON (``{"data": [`` , spaces, ``]}``) gzipped, made once per process.

    Generated rather than shipped; compressing runs of spaces is cheap (tens of milliseconds).
    """
    head, tail = b'{"data": [', b"]}"
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # 16 +: a gzip wrapper
    parts = [compressor.compress(head)]
    block = b" " * (1024 * 1024)
    padding = GZIP_BOMB_BYTES - len(head) - len(tail)
    for start in range(0, padding, len(block)):
        parts.append(compressor.compress(block[: padding - start]))
    parts += [compressor.compress(tail), compressor.flush()]
    return b"".join(parts)


class FaultSwitches:
    """The fault switches of :class:`~django_cloudsync.testing.fake.FakeCloudSync`.

    A part of the fake, not a fake of its own: the lock, the counters and the queues are the
    fake's state (:class:`~django_cloudsync.testing.fake.state.FakeState` sets them up).
    """

    #: How long a ``timeout`` fault stalls before its 504; finite, so nothing hangs forever.
    timeout_delay: float
    _lock: threading.Lock
    _counters: dict[str, int]
    _faults: dict[str, deque[Fault]]
    _delays: dict[str, deque[Delay]]

    def fail_next(
        self, endpoint: str, kind: str, times: int = 1, retry_after: int | str | None = None
    ) -> None:
        """Answer the next ``times`` requests to ``endpoint`` with fault ``kind``.

        Faults queue up per endpoint and are served in the order they were added. ``"me"`` and
        ``"workspaces"`` faults are served before ``"api"`` ones (which match any ``/v1`` path).
        """
        _check_times(times)
        self._add_fault(endpoint, Fault(kind, retry_after, times))

    def respond_next(
        self, endpoint: str, status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None
    ) -> None:
        """Answer the next request to ``endpoint`` with exactly this response, once.

        For answers the named fault kinds do not cover: any final status (200-599, named or not),
        any body, any headers. Nothing is added but ``Content-Length`` and the common no-store
        headers: without a ``Content-Type`` in ``headers`` the answer has none. It queues with the
        faults of ``endpoint`` (same endpoints, same order) and counts in ``faults_injected``.
        A 1xx is refused (the client would wait for a final answer), and so are a body on a 204
        or 304, framing headers (``Content-Length``, ``Transfer-Encoding``, ``Connection``) and
        header lines that HTTP/1.1 cannot carry: each would break the connection, not the client.
        """
        check_endpoint(endpoint)
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError("status must be a final HTTP status code, 200-599")
        if not isinstance(body, bytes):
            raise ValueError("body must be bytes")
        if body and status in (204, 304):
            raise ValueError("a 204 or 304 answer has no body")
        checked: list[tuple[str, str]] = []
        for name, value in headers or []:
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
                raise ValueError("a header name must be an HTTP token")
            if name.lower() in _FRAMING_HEADERS:
                raise ValueError(f"{name} is the server's to send")
            if not isinstance(value, str) or any(c in value for c in "\r\n\x00"):
                raise ValueError(f"the value of {name} must be one header line")
            try:
                value.encode("latin-1")
            except UnicodeEncodeError:
                raise ValueError(f"the value of {name} must be Latin-1, as HTTP/1.1 sends it") from None
            checked.append((name, value))
        self._queue(
            self._faults, endpoint, Fault(SCRIPTED, None, 1, response=Response(status, body, checked))
        )

    def fail_always(self, endpoint: str, kind: str, retry_after: int | str | None = None) -> None:
        """Answer every request to ``endpoint`` with fault ``kind`` until :meth:`clear_faults`."""
        self._add_fault(endpoint, Fault(kind, retry_after, None))

    def clear_faults(self) -> None:
        """Remove every queued and permanent fault."""
        self._clear(self._faults)

    def _add_fault(self, endpoint: str, fault: Fault) -> None:
        check_endpoint(endpoint)
        if fault.kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        if fault.kind == dialect.INVALID_GRANT and endpoint != "token":
            raise ValueError("an invalid_grant fault only makes sense on the token endpoint")
        if fault.retry_after is not None and not isinstance(fault.retry_after, (int, str)):
            raise ValueError("retry_after must be seconds or an HTTP date")
        self._queue(self._faults, endpoint, fault)

    def _take_fault(self, endpoints: Iterable[str]) -> Fault | None:
        """Consume the first pending fault of the first of ``endpoints`` that has one."""
        with self._lock:
            fault = _take_first(self._faults, endpoints)
            if fault is not None:
                self._counters["faults_injected"] += 1
                if fault.kind == dialect.INVALID_GRANT:
                    self._counters["invalid_grants"] += 1
            return fault

    def _fault_response(self, fault: Fault) -> Response:
        """What the client sees for an injected fault. Runs outside the lock (it may sleep)."""
        if fault.response is not None:
            return dataclasses.replace(fault.response, headers=list(fault.response.headers))
        if fault.kind == "timeout":
            time.sleep(max(0.0, float(self.timeout_delay)))
            return html_response(504, _GATEWAY_TIMEOUT_PAGE)
        if fault.kind == "bad_gateway":
            return html_response(502, _BAD_GATEWAY_PAGE)
        if fault.kind == "invalid_json":
            return json_response(200, None, raw=_TRUNCATED_JSON)
        if fault.kind == "html":
            return html_response(200, _MAINTENANCE_PAGE)
        if fault.kind == "rate_limited":
            headers = [] if fault.retry_after is None else [("Retry-After", str(fault.retry_after))]
            return api_error(429, _RATE_LIMITED, headers)
        if fault.kind == dialect.INVALID_GRANT:
            return oauth_error(400, dialect.INVALID_GRANT, "The grant is invalid (injected fault).")
        if fault.kind == "malformed_profile":
            # Well-formed JSON that breaks the documented shape: no `id`, a name of the wrong type.
            return json_response(200, {"email": "someone@example.com", "name": ["not", "a", "string"]})
        if fault.kind == "gzip_bomb":
            return json_response(200, None, [("Content-Encoding", "gzip")], raw=_gzip_bomb())
        return api_error(500, _SERVER_ERROR)

    # ------------------------------------------------------------------ delays

    def delay_next(self, endpoint: str, seconds: float, times: int = 1, *, drip: bool = False) -> None:
        """Let the next ``times`` answers from ``endpoint`` take ``seconds`` (at most ``MAX_DELAY``).

        The request is handled on arrival, as always; only its answer is late, so a client that
        gives up on a delayed refresh has still had its refresh token rotated. Without ``drip``
        nothing is sent for ``seconds``, then the whole answer; with ``drip`` the status line and
        headers go at once and the body follows ``DRIP_CHUNK_BYTES`` at a time, spread over
        ``seconds`` (a "slow drip", which a per-read timeout alone never stops). A delay applies to
        whatever the answer is, a fault's included, and counts in ``delayed_answers``.
        """
        _check_times(times)
        self._add_delay(endpoint, Delay(seconds, drip, times))

    def delay_always(self, endpoint: str, seconds: float, *, drip: bool = False) -> None:
        """Let every answer from ``endpoint`` take ``seconds`` (see :meth:`delay_next`) until
        :meth:`clear_delays`."""
        self._add_delay(endpoint, Delay(seconds, drip, None))

    def clear_delays(self) -> None:
        """Remove every queued and permanent delay."""
        self._clear(self._delays)

    def _add_delay(self, endpoint: str, delay: Delay) -> None:
        check_endpoint(endpoint)
        seconds = delay.seconds
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not math.isfinite(seconds)
            or not 0 <= seconds <= MAX_DELAY
        ):
            raise ValueError(f"seconds must be a number from 0 to {MAX_DELAY:g}")
        if not isinstance(delay.drip, bool):
            raise ValueError("drip must be true or false")
        self._queue(self._delays, endpoint, delay)

    def _take_delay(self, endpoints: Iterable[str]) -> Delay | None:
        """Consume the first pending delay of the first of ``endpoints`` that has one."""
        with self._lock:
            delay = _take_first(self._delays, endpoints)
            if delay is not None:
                self._counters["delayed_answers"] += 1
            return delay

    # ------------------------------------------------------------------ the queues of both

    def _queue(self, queues: dict[str, deque[_SwitchT]], endpoint: str, switch: _SwitchT) -> None:
        with self._lock:
            queues[endpoint].append(switch)

    def _clear(self, queues: dict[str, deque[_SwitchT]]) -> None:
        with self._lock:
            for queue in queues.values():
                queue.clear()
