"""The fault switches: what makes the fake CloudSync answer wrongly, on purpose.

A test sets a switch on an endpoint (``fail_next``, ``fail_always``, ``respond_next``, or
``POST /_fake/faults``); the next requests there are answered with the fault instead of the real
answer, in the order the switches were set, and each one counts in ``faults_injected``.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

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
)
#: The fault kind of an answer scripted with :meth:`FaultSwitches.respond_next` (it carries its own
#: response, so it is not one of ``FAULT_KINDS``).
SCRIPTED: Final = "scripted"
DEFAULT_TIMEOUT_DELAY: Final = 3.0

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

    def fail_next(
        self, endpoint: str, kind: str, times: int = 1, retry_after: int | str | None = None
    ) -> None:
        """Answer the next ``times`` requests to ``endpoint`` with fault ``kind``.

        Faults queue up per endpoint and are served in the order they were added. ``"me"`` and
        ``"workspaces"`` faults are served before ``"api"`` ones (which match any ``/v1`` path).
        """
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError("times must be a positive integer")
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
        fault = Fault(SCRIPTED, None, 1, response=Response(status, body, checked))
        with self._lock:
            self._faults[endpoint].append(fault)

    def fail_always(self, endpoint: str, kind: str, retry_after: int | str | None = None) -> None:
        """Answer every request to ``endpoint`` with fault ``kind`` until :meth:`clear_faults`."""
        self._add_fault(endpoint, Fault(kind, retry_after, None))

    def clear_faults(self) -> None:
        """Remove every queued and permanent fault."""
        with self._lock:
            for queue in self._faults.values():
                queue.clear()

    def _add_fault(self, endpoint: str, fault: Fault) -> None:
        check_endpoint(endpoint)
        if fault.kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        if fault.kind == dialect.INVALID_GRANT and endpoint != "token":
            raise ValueError("an invalid_grant fault only makes sense on the token endpoint")
        if fault.retry_after is not None and not isinstance(fault.retry_after, (int, str)):
            raise ValueError("retry_after must be seconds or an HTTP date")
        with self._lock:
            self._faults[endpoint].append(fault)

    def _take_fault(self, endpoints: Iterable[str]) -> Fault | None:
        """Consume the first pending fault of the first of ``endpoints`` that has one."""
        with self._lock:
            for endpoint in endpoints:
                queue = self._faults[endpoint]
                if not queue:
                    continue
                fault = queue[0]
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        queue.popleft()
                self._counters["faults_injected"] += 1
                if fault.kind == dialect.INVALID_GRANT:
                    self._counters["invalid_grants"] += 1
                return dataclasses.replace(fault)
        return None

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
        return api_error(500, _SERVER_ERROR)
