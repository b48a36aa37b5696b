"""Serve a :class:`~django_cloudsync.testing.fake.FakeCloudSync` on a real loopback socket.

A real socket, not a mocked transport, so tests exercise what production does: connection
pooling, timeouts, status lines, headers. The server speaks HTTP/1.1 with keep-alive and counts
the TCP connections it accepts (``fake.counters["connections"]``), which is how a benchmark
proves that the app reuses connections. One daemon thread per connection; :meth:`stop` closes
idle keep-alive connections too, so it returns at once. A body the app yields over time (a delay
switch's drip) is written chunk by chunk as it comes, after the headers.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import sys
import threading
import traceback
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from types import TracebackType
from typing import Any, Final, NamedTuple
from urllib.parse import unquote

from ..wire import is_loopback_host
from .fake import MAX_BODY_BYTES, FakeCloudSync, WSGIApp

#: An idle keep-alive connection is closed after this many seconds (like a real server would).
IDLE_TIMEOUT: Final = 60.0
_POLL_INTERVAL: Final = 0.05

# The one loopback rule (``testing/__main__`` imports it from here): the fake is never reachable
# from another machine, since it hands out tokens to anyone who asks.
__all__ = ["IDLE_TIMEOUT", "FakeCloudSyncServer", "is_loopback_host"]


class _Handler(BaseHTTPRequestHandler):
    """Adapts one HTTP/1.1 connection to the WSGI app, request after request (keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeCloudSync/1.0"
    timeout = IDLE_TIMEOUT
    # Status line, headers and body leave in one segment, without Nagle's delay: a response split
    # in two waits ~40 ms for the client's delayed ACK on every keep-alive request.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)
        self.server.fake.record_connection()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def version_string(self) -> str:
        """Only ``FakeCloudSync/1.0`` in ``Server``: no Python version to fingerprint."""
        return self.server_version

    def log_message(self, message_format: str, *args: Any) -> None:
        """Log nothing: request lines carry authorization codes and state in their query strings."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        body = self._read_body()
        if body is None:
            return
        status, headers, payload = _call_wsgi(self.server.fake, self._environ(body))
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        if isinstance(payload, _StreamedBody):
            self._stream(payload)
            return
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _stream(self, body: _StreamedBody) -> None:
        """The headers at once, then each chunk as the app yields it (a drip must reach the client
        in pieces). A body that does not match its ``Content-Length`` closes the connection: the
        next answer on it would be misread."""
        self.send_header("Content-Length", str(body.length))
        self.end_headers()
        self.wfile.flush()
        sent = 0
        try:
            for chunk in body.chunks:
                sent += len(chunk)
                if sent > body.length:
                    break
                self.wfile.write(chunk)
                self.wfile.flush()
        finally:
            close = getattr(body.chunks, "close", None)
            if close is not None:
                close()
        if sent != body.length:
            self.close_connection = True

    def _read_body(self) -> bytes | None:
        """The request body, or ``None`` after answering a request whose body cannot be read.

        Only ``Content-Length`` bodies are supported; an unread body would corrupt the next request
        on the connection, so those errors also close it.
        """
        if self.headers.get("Transfer-Encoding"):
            self.send_error(411, "Send a Content-Length, not a chunked body")
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.send_error(400, "Bad Content-Length")
            return None
        if length > MAX_BODY_BYTES:
            self.send_error(413)
            return None
        return self.rfile.read(length) if length else b""

    def _environ(self, body: bytes) -> dict[str, Any]:
        path, _, query = self.path.partition("?")
        host, port = self.server.server_address[:2]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, "iso-8859-1"),
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in self.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                environ[key] = value
        return environ


class _StreamedBody(NamedTuple):
    """A body the app yields over time, and the ``Content-Length`` it announced for it."""

    length: int
    chunks: Iterable[bytes]


def _declared_length(headers: Iterable[tuple[str, str]]) -> int | None:
    for name, value in headers:
        if name.lower() == "content-length":
            return int(value) if value.isascii() and value.isdigit() else None
    return None


def _call_wsgi(
    app: WSGIApp, environ: dict[str, Any]
) -> tuple[str, list[tuple[str, str]], bytes | _StreamedBody]:
    """Run a WSGI app: status, headers, and the whole body, or the body still to come.

    A body returned as a list is joined. Any other iterable with a ``Content-Length`` is left to
    stream, chunk by chunk (the fake returns one only to drip an answer). An exception in the app
    becomes a 500 and one line on stderr naming only its type and place: exception messages
    could contain request data, and the fake never logs secrets.
    """
    captured: dict[str, Any] = {}
    chunks: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"], captured["headers"] = status, list(headers)
        return chunks.append

    try:
        result = app(environ, start_response)
        length = _declared_length(captured.get("headers", ()))
        if not isinstance(result, (list, tuple)) and length is not None and not chunks:
            return captured["status"], captured["headers"], _StreamedBody(length, result)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    except Exception as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        print(f"fake CloudSync: {type(exc).__name__} at {frame.filename}:{frame.lineno}", file=sys.stderr)
        body = b'{"error": "server_error"}'
        return "500 Internal Server Error", [("Content-Type", "application/json")], body
    return captured["status"], captured["headers"], b"".join(chunks)


class _HTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its open connections, so it can close them on stop."""

    daemon_threads = True
    allow_reuse_address = True
    # The listen backlog. A connection beyond it waits for a SYN retransmit (a second or more), so
    # a test opening hundreds of connections at once (200 gathered calls) would measure the kernel's
    # retry timer, not the app; the kernel caps it at net.core.somaxconn.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], fake: FakeCloudSync) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.fake = fake
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind() resolves the host's FQDN, which can stall on a reverse DNS lookup.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Wake every connection thread (idle keep-alive ones block in ``recv``) so it ends."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            # A connection that ended meanwhile (its thread not yet past untrack) needs no waking.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (or a stop) is routine; anything else gets one line, no details."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            return
        print(f"fake CloudSync: {type(error).__name__} while serving a connection", file=sys.stderr)


class FakeCloudSyncServer:
    """A :class:`FakeCloudSync` on ``http://<host>:<port>`` (port 0: any free port), in a daemon thread.

    ``with FakeCloudSyncServer() as server:`` starts and stops it; ``server.url`` is the base URL of
    both the authorization server and the API; ``server.fake`` is the app, to steer it.
    """

    def __init__(self, fake: FakeCloudSync | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        if not is_loopback_host(host):
            raise ValueError(f"the fake CloudSync only listens on loopback hosts, not {host!r}")
        self.fake = fake if fake is not None else FakeCloudSync()
        self.host = host
        self.port = port
        #: The server and the thread serving it, while started.
        self._running: tuple[_HTTPServer, threading.Thread] | None = None

    def __repr__(self) -> str:
        state = self.url if self._running is not None else "stopped"
        return f"<FakeCloudSyncServer {state}>"

    @property
    def url(self) -> str:
        """The base URL, without a trailing slash, e.g. ``http://127.0.0.1:54321``.

        Known once the port is: after :meth:`start` when the port was 0 (and still after :meth:`stop`).
        """
        if self.port == 0:
            raise RuntimeError("the fake CloudSync server has no port until it is started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> FakeCloudSyncServer:
        """Bind and serve in a daemon thread; returns ``self``. Starting twice is an error."""
        if self._running is not None:
            raise RuntimeError("the fake CloudSync server is already started")
        httpd = _HTTPServer((self.host, self.port), self.fake)
        self.port = int(httpd.server_address[1])
        thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"FakeCloudSyncServer:{self.port}",
            daemon=True,
        )
        self._running = (httpd, thread)
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and every open connection. Idempotent."""
        if self._running is None:
            return
        httpd, thread = self._running
        self._running = None
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        thread.join()

    def __enter__(self) -> FakeCloudSyncServer:
        if self._running is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
