"""Instruments: queries from every thread, in-process WSGI requests, paired timing, Python call counts."""

from __future__ import annotations

import cProfile
import gc
import pstats
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from types import TracebackType
from typing import Any

from django.core.signals import request_started
from django.db import connections, reset_queries
from django.db.backends.signals import connection_created


class QueryCounter:
    """Counts the queries run on every connection of this process, from any thread, as Django does.

    "Queries" means what ``django_assert_num_queries`` and ``CaptureQueriesContext`` count:
    every statement Django logs, transaction control (``BEGIN``, ``COMMIT``, ``SAVEPOINT``)
    included, since each is a round trip. Those see one connection of one thread; django-cloudsync
    may write tokens from a thread of its own (when the caller is inside a transaction), so this
    counter logs the current thread's connections and every connection another thread opens
    while it is active. Only each statement's kind is kept (``INSERT socialaccount_socialtoken``),
    never its text: logged SQL carries its parameters, tokens included.
    """

    def __init__(self) -> None:
        self.statements: list[str] = []
        self._lock = threading.Lock()
        #: id(connection) -> (connection, its log length when we started, its force_debug_cursor)
        self._watched: dict[int, tuple[Any, int, bool]] = {}

    @property
    def count(self) -> int:
        return len(self.statements)

    def _watch(self, connection: Any) -> None:
        with self._lock:
            if id(connection) not in self._watched:
                self._watched[id(connection)] = (
                    connection,
                    len(connection.queries_log),
                    connection.force_debug_cursor,
                )
                connection.force_debug_cursor = True

    def _on_connection_created(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        self._watch(connection)

    def __enter__(self) -> QueryCounter:
        # Django empties the logs at the start of each request; the counter spans requests.
        request_started.disconnect(reset_queries)
        connection_created.connect(self._on_connection_created, weak=False, dispatch_uid=id(self))
        for connection in connections.all():
            self._watch(connection)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        connection_created.disconnect(dispatch_uid=id(self))
        request_started.connect(reset_queries)
        with self._lock:
            for connection, start, force_debug_cursor in self._watched.values():
                log = list(connection.queries_log)
                if len(log) == connection.queries_log.maxlen:
                    raise RuntimeError("more queries than Django keeps in its log: count fewer at a time")
                self.statements.extend(statement_kind(query["sql"]) for query in log[start:])
                connection.force_debug_cursor = force_debug_cursor
            self._watched.clear()


def statement_kind(sql: str) -> str:
    """``INSERT socialaccount_socialtoken``, ``SELECT django_session``, ``BEGIN``, ``COMMIT``, ..."""
    words = sql.split(None, 1)
    verb = words[0].upper() if words else "?"
    if verb not in ("SELECT", "INSERT", "UPDATE", "DELETE"):
        return verb
    table = re.search(r'(?:FROM|INTO|UPDATE)\s+["`]?([A-Za-z0-9_]+)["`]?', sql, flags=re.IGNORECASE)
    return f"{verb} {table.group(1)}" if table else verb


class WsgiClient:
    """GET requests straight through a Django WSGI handler: no test client, no network.

    The test client adds its own work to every request (signals, copies, response parsing); the
    bare handler is what production runs, so a per-request cost shows at its real size.
    """

    def __init__(self, handler: Callable[..., Any], cookie: str = "") -> None:
        self.handler = handler
        self.cookie = cookie

    def get(self, path: str) -> tuple[int, bytes]:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SCRIPT_NAME": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_COOKIE": self.cookie,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": BytesIO(b""),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        status: list[str] = []

        def start_response(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status.append(line)
            return lambda data: None

        result = self.handler(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()  # sends request_finished, as a real server does
        return int(status[0].split(" ", 1)[0]), body


@dataclass
class RatioResult:
    """Paired timing of two variants: the median of the per-pair ratios, and the per-call medians."""

    median_ratio: float
    first_per_call: float
    second_per_call: float
    pairs: int


def paired_ratio(first: Callable[[], object], second: Callable[[], object], *, pairs: int) -> RatioResult:
    """Time ``first`` against ``second``: ``pairs`` pairs of one call each, which going first alternating.

    The two calls of a pair run microseconds apart, so a burst of load from elsewhere on the
    machine (another process, a noisy neighbour) usually hits both or neither; the median of
    the per-pair ratios then ignores the pairs it hit unevenly. Garbage collection is run
    between pairs, never inside one.
    """
    for _ in range(max(10, pairs // 20)):  # warm both: caches, lazily built URL resolvers, pools
        first()
        second()
    clock = time.perf_counter
    ratios: list[float] = []
    first_times: list[float] = []
    second_times: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for index in range(pairs):
            if index % 2:
                started = clock()
                second()
                middle = clock()
                first()
                ended = clock()
                first_time, second_time = ended - middle, middle - started
            else:
                started = clock()
                first()
                middle = clock()
                second()
                ended = clock()
                first_time, second_time = middle - started, ended - middle
            first_times.append(first_time)
            second_times.append(second_time)
            ratios.append(first_time / second_time)
            if index % 64 == 63:
                gc.collect()
    finally:
        if gc_was_enabled:
            gc.enable()
    return RatioResult(
        median_ratio=statistics.median(ratios),
        first_per_call=statistics.median(first_times),
        second_per_call=statistics.median(second_times),
        pairs=pairs,
    )


def median_seconds(work: Callable[[], object], *, number: int, repeat: int) -> float:
    """The median over ``repeat`` runs of the mean time of one call of ``work`` (``number`` calls a run)."""
    work()
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(number):
            work()
        runs.append((time.perf_counter() - started) / number)
    return statistics.median(runs)


def python_calls(work: Callable[[], object], *, repeat: int) -> float:
    """Python function calls per call of ``work`` (cProfile's count): a cost no noise can move."""
    work()
    profile = cProfile.Profile()
    profile.enable()
    try:
        for _ in range(repeat):
            work()
    finally:
        profile.disable()
    calls = sum(entry[1] for entry in pstats.Stats(profile).stats.values())  # type: ignore[attr-defined]
    return calls / repeat
