"""Per-request costs: what the middleware costs when unused, at first use, and its connections.

Requests go straight through Django's WSGI handler (see :class:`~benchmarks.measure.WsgiClient`),
signed in with a real session cookie, on one thread. The "hand-rolled" site has no middleware:
its views read allauth's ``SocialToken`` and call the API with a new ``requests.Session``.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.test import Client, override_settings

from django_cloudsync import http

from . import seed
from .context import Context
from .measure import QueryCounter, WsgiClient, paired_ratio, python_calls
from .report import Row

ACCOUNT_ID = "usr_bench_requests"
#: Requests per figure when counting queries (counts do not vary; a few show that they do not).
COUNT_REQUESTS = 20
#: The connection figure, as the issue states it.
API_REQUESTS = 500
CLOUDSYNC_MIDDLEWARE = "django_cloudsync.middleware.CloudSyncMiddleware"
REFERENCE_MIDDLEWARE = "benchmarks.middleware.PassThroughMiddleware"


def _session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def _queries_per_request(client: WsgiClient, path: str, requests: int = COUNT_REQUESTS) -> float:
    with QueryCounter() as counter:
        for _ in range(requests):
            _expect_ok(client, path)
    return counter.count / requests


def _expect_ok(client: WsgiClient, path: str) -> bytes:
    status, body = client.get(path)
    if status != 200:
        raise RuntimeError(f"GET {path} answered {status}")
    return body


def _fmt(queries: float) -> str:
    return f"{queries:g}"


def run(context: Context) -> list[Row]:
    seed.wipe()
    user = seed.connected_user(context.fake, ACCOUNT_ID)
    cookie = _session_cookie(user)
    with_middleware = WsgiClient(WSGIHandler(), cookie)
    without = [name for name in settings.MIDDLEWARE if name != CLOUDSYNC_MIDDLEWARE]
    with override_settings(MIDDLEWARE=without):
        without_middleware = WsgiClient(WSGIHandler(), cookie)  # the middleware chain is built here
    with override_settings(MIDDLEWARE=[*without, REFERENCE_MIDDLEWARE]):
        pass_through_middleware = WsgiClient(WSGIHandler(), cookie)
    anonymous_with, anonymous_without = (
        WsgiClient(with_middleware.handler),
        WsgiClient(without_middleware.handler),
    )
    return [
        *_unused(
            with_middleware,
            without_middleware,
            pass_through_middleware,
            anonymous_with,
            anonymous_without,
            context,
        ),
        _first_use(with_middleware),
        _connections(with_middleware, context),
    ]


def _unused(
    with_middleware: WsgiClient,
    without_middleware: WsgiClient,
    pass_through_middleware: WsgiClient,
    anonymous_with: WsgiClient,
    anonymous_without: WsgiClient,
    context: Context,
) -> list[Row]:
    pages = [
        ("signed in, page not using request.user", with_middleware, without_middleware, "/bench/untouched/"),
        ("signed in, page using request.user", with_middleware, without_middleware, "/bench/username/"),
        ("anonymous, page using request.user", anonymous_with, anonymous_without, "/bench/username/"),
    ]
    extra: list[float] = []
    details: list[str] = []
    for label, client_with, client_without, path in pages:
        queries_with = _queries_per_request(client_with, path)
        queries_without = _queries_per_request(client_without, path)
        extra.append(queries_with - queries_without)
        details.append(f"{label}: {_fmt(queries_without)} without, {_fmt(queries_with)} with")
    count_row = Row(
        figure="extra DB queries per request, view not using request.user.cloudsync",
        target="0",
        app=_fmt(max(extra)),
        handrolled="0 (no middleware)",
        met=max(extra) == 0,
        notes=["Queries per request (without → with the middleware): " + "; ".join(details) + "."],
    )

    pairs = 1000 if context.quick else 5000
    timings = []
    for label, path, plain_path in _timed_pages():

        def with_it(path: str = path) -> object:
            return with_middleware.get(path)

        def without_it(path: str = plain_path) -> object:
            return without_middleware.get(path)

        def pass_through(path: str = plain_path) -> object:
            return pass_through_middleware.get(path)

        ratio = paired_ratio(with_it, without_it, pairs=pairs)
        floor = paired_ratio(pass_through, without_it, pairs=pairs // 2)
        calls_with, calls_without = python_calls(with_it, repeat=50), python_calls(without_it, repeat=50)
        timings.append((label, ratio, floor, calls_with, calls_without))
    worst = max(ratio.median_ratio for _, ratio, _, _, _ in timings)
    time_row = Row(
        figure="time per request with / without the middleware, view not using it (median ratio), "
        "pages and API views",
        target="≤ 1.02",
        app="; ".join(f"{ratio.median_ratio:.3f} ({label})" for label, ratio, _, _, _ in timings),
        handrolled="1 (no middleware)",
        met=worst <= 1.02,
        notes=[
            f"{pairs:,} pairs of signed-in requests per page, one with and one without the middleware "
            "side by side; median of the pair ratios. The API views (benchmarks/api.py) are a DRF view "
            "(session authentication, IsAuthenticated) with the app's EXCEPTION_HANDLER, and a "
            "django-ninja view (django_auth) on an API that went through "
            "django_cloudsync.contrib.ninja.install(), against the same view on a plain NinjaAPI. "
            + "; ".join(
                f"{label}: {ratio.second_per_call * 1e6:.0f} µs without, "
                f"{ratio.first_per_call * 1e6:.0f} µs with "
                f"(a pass-through middleware: {floor.median_ratio:.3f}); Python function calls per request "
                f"{calls_without:.0f} → {calls_with:.0f}"
                for label, ratio, floor, calls_with, calls_without in timings
            )
            + "."
        ],
    )
    return [count_row, time_row]


def _timed_pages() -> list[tuple[str, str, str]]:
    """(label, path with the app's pieces, path without them) of each view the timing covers."""
    pages = [
        ("page not using request.user", "/bench/untouched/", "/bench/untouched/"),
        ("page using request.user", "/bench/username/", "/bench/username/"),
    ]
    if "rest_framework" in settings.API_FRAMEWORKS:
        pages.append(("DRF view", "/bench/drf/untouched/", "/bench/drf/untouched/"))
    if "ninja" in settings.API_FRAMEWORKS:
        pages.append(("ninja view", "/bench/ninja-app/untouched", "/bench/ninja-plain/untouched"))
    return pages


def _first_use(client: WsgiClient) -> Row:
    base = _queries_per_request(client, "/bench/username/")
    app = _queries_per_request(client, "/bench/app-client/") - base
    handrolled = _queries_per_request(client, "/bench/handrolled-token/") - base
    return Row(
        figure="DB queries at first use of request.user.cloudsync in a request (user already loaded)",
        target="1",
        app=_fmt(app),
        handrolled=f"{_fmt(handrolled)} (reading its SocialToken)",
        met=app == 1,
        notes=[f"Counted as the difference with the same page not using CloudSync ({_fmt(base)} queries)."],
    )


def _connections(client: WsgiClient, context: Context) -> Row:
    fake = context.fake
    results: dict[str, tuple[int, int, float]] = {}
    for label, path in (("app", "/bench/app-me/"), ("hand-rolled", "/bench/handrolled-me/")):
        http.reset_session()  # an empty pool: the connection it opens is counted
        before = fake.counters
        started = time.perf_counter()
        for _ in range(API_REQUESTS):
            _expect_ok(client, path)
        elapsed = time.perf_counter() - started
        after = fake.counters
        results[label] = (
            after["connections"] - before["connections"],
            after["api_calls"] - before["api_calls"],
            elapsed / API_REQUESTS,
        )
    app_connections, app_calls, _ = results["app"]
    handrolled_connections, _, _ = results["hand-rolled"]
    return Row(
        figure=f"new TCP connections to the API, {API_REQUESTS} requests on one thread, one API call each",
        target="1",
        app=str(app_connections),
        handrolled=str(handrolled_connections),
        met=app_connections == 1 and app_calls == API_REQUESTS,
        notes=[
            "API calls seen by the fake / time per request: "
            + "; ".join(
                f"{label} {calls} / {per_request * 1e6:.0f} µs"
                for label, (_, calls, per_request) in results.items()
            )
            + "."
        ],
    )
