"""The WSGI plumbing of the fake CloudSync: the request it reads, the response it writes, and
:func:`mount`, which serves it beside another WSGI application.

Nothing here knows OAuth or the API: these are the bytes in and out, and the response shapes
(JSON, an RFC 6749 error, an API error, HTML) that every other module of the fake answers with.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from .app import FakeCloudSync

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

#: Request bodies larger than this are refused: the fake must not be a memory sink.
MAX_BODY_BYTES: Final = 64 * 1024

# Error codes of the fake's own answers (no route, wrong method), beside the dialect's.
NOT_FOUND: Final = "not_found"
METHOD_NOT_ALLOWED: Final = "method_not_allowed"

#: Sent with every response: nothing the fake answers may be cached or sniffed.
_COMMON_HEADERS: Final = (
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
    ("X-Content-Type-Options", "nosniff"),
)


@dataclass(frozen=True)
class Request:
    """The parts of a WSGI request the fake looks at."""

    method: str
    path: str
    script_name: str
    query: dict[str, list[str]]
    content_type: str
    authorization: str
    body: bytes
    body_too_large: bool

    @classmethod
    def from_environ(cls, environ: Environ) -> Request:
        """Read the request, the body bounded by ``MAX_BODY_BYTES``."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        too_large = length > MAX_BODY_BYTES
        body = environ["wsgi.input"].read(length) if 0 < length <= MAX_BODY_BYTES else b""
        # PEP 3333 strings are bytes decoded as latin-1; the query string is really UTF-8.
        raw_query = environ.get("QUERY_STRING", "").encode("latin-1").decode("utf-8", "replace")
        return cls(
            method=environ.get("REQUEST_METHOD", "GET").upper(),
            path=environ.get("PATH_INFO", "") or "/",
            script_name=environ.get("SCRIPT_NAME", "").rstrip("/"),
            query=parse_qs(raw_query, keep_blank_values=True),
            content_type=environ.get("CONTENT_TYPE", ""),
            authorization=environ.get("HTTP_AUTHORIZATION", ""),
            body=body,
            body_too_large=too_large,
        )

    def json_object(self) -> dict[str, Any] | None:
        """The body as a JSON object, or ``None`` unless it is one sent as ``application/json``."""
        if self.content_type.split(";")[0].strip().lower() != "application/json":
            return None
        try:
            value = json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def form(self) -> dict[str, list[str]]:
        """The body parsed as ``application/x-www-form-urlencoded``."""
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def status_line(self) -> str:
        try:
            phrase = HTTPStatus(self.status).phrase
        except ValueError:  # a scripted answer may use a code that HTTPStatus does not name
            phrase = "Unknown"
        return f"{self.status} {phrase}"

    def wsgi_headers(self) -> list[tuple[str, str]]:
        """The headers with the common ones and an exact ``Content-Length`` (keep-alive needs it)."""
        return [*self.headers, *_COMMON_HEADERS, ("Content-Length", str(len(self.body)))]


def json_response(
    status: int, payload: Any, headers: Iterable[tuple[str, str]] = (), *, raw: bytes | None = None
) -> Response:
    body = raw if raw is not None else json.dumps(payload).encode("utf-8")
    return Response(status, body, [("Content-Type", "application/json"), *headers])


def oauth_error(
    status: int, error: str, description: str, headers: Iterable[tuple[str, str]] = ()
) -> Response:
    """An RFC 6749 §5.2 token endpoint error."""
    return json_response(status, {"error": error, "error_description": description}, headers)


def api_error(status: int, error: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """An API error exactly as the dialect documents it: ``{"error": ...}``."""
    return json_response(status, {"error": error}, headers)


def html_response(status: int, page: bytes, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return Response(status, page, [("Content-Type", "text/html; charset=utf-8"), *headers])


def mount(django_app: WSGIApp, fake: FakeCloudSync, prefix: str = "/fake-cloudsync") -> WSGIApp:
    """A WSGI app that serves ``fake`` under ``prefix`` and everything else with ``django_app``.

    For the example project's ``runserver``: one process, one port, and the fake's base URL is
    ``http://host:port<prefix>``. The prefix moves from ``PATH_INFO`` to ``SCRIPT_NAME``, so the
    fake builds its own links (the consent form's action) under the prefix.
    """
    prefix = "/" + prefix.strip("/")
    if prefix == "/":
        raise ValueError("mount() needs a non-empty prefix")

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path != prefix and not path.startswith(prefix + "/"):
            return django_app(environ, start_response)
        fake_environ = dict(environ)
        fake_environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "").rstrip("/") + prefix
        fake_environ["PATH_INFO"] = path[len(prefix) :]
        return fake(fake_environ, start_response)

    return app
