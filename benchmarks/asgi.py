"""The benchmark site under uvicorn: ``uvicorn benchmarks.asgi:application`` (``bench_async`` starts it).

One process serves the site twice, so that a request with and a request without
``CloudSyncMiddleware`` run side by side in the same worker and event loop: ``/with/<path>``
goes to Django's ASGI handler built from ``benchmarks.settings.MIDDLEWARE``, ``/without/<path>``
to one built without the middleware. Both strip their prefix, so they do the same work.

``/_bench/stats`` (answered here, not by Django: it must not add threads of its own) reports the
process id, its thread count and its peak since ``/_bench/reset``, and, when
``CLOUDSYNC_BENCH_LOOP_DEBUG=1``, the :class:`~testsupport.loopwatch.LoopWatch` counts since
then: slow callbacks logged by asyncio's debug mode (50 ms threshold), how many of them ran the
app's code.

``CLOUDSYNC_BENCH_ASGI_DATABASE`` names the alias of ``benchmarks.settings.DATABASES`` this worker
uses as its default (``postgres`` for the PostgreSQL race).
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

_alias = os.environ.get("CLOUDSYNC_BENCH_ASGI_DATABASE", "default")
if _alias != "default":
    settings.DATABASES = {"default": settings.DATABASES[_alias]}

import django  # noqa: E402 (after the database is chosen)

django.setup(set_prefix=False)

from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.test import override_settings  # noqa: E402

from testsupport.loopwatch import LoopWatch, os_thread_count  # noqa: E402

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]

CLOUDSYNC_MIDDLEWARE = "django_cloudsync.middleware.CloudSyncMiddleware"

with_middleware = ASGIHandler()
with override_settings(MIDDLEWARE=[name for name in settings.MIDDLEWARE if name != CLOUDSYNC_MIDDLEWARE]):
    without_middleware = ASGIHandler()  # the middleware chain is built here
SITES = {"/with": with_middleware, "/without": without_middleware}
LOOP_DEBUG = os.environ.get("CLOUDSYNC_BENCH_LOOP_DEBUG") == "1"
watch: LoopWatch | None = None


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    path: str = scope.get("path", "")
    if path in ("/_bench/stats", "/_bench/reset"):
        await _stats(send, reset=path == "/_bench/reset")
        return
    prefix = "/" + path.split("/", 2)[1]
    site = SITES.get(prefix)
    if site is None:
        await _answer(send, 404, {"error": "not_found"})
        return
    inner = {**scope, "path": path[len(prefix) :]}
    inner.pop("raw_path", None)  # Django reads "path"; a stale raw path would only mislead
    await site(inner, receive, send)


async def _lifespan(receive: Receive, send: Send) -> None:
    global watch
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            watch = LoopWatch(debug=LOOP_DEBUG).start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if watch is not None:
                watch.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _stats(send: Send, *, reset: bool) -> None:
    if reset and watch is not None:
        watch.reset()
    body: dict[str, Any] = {"pid": os.getpid(), "threads": os_thread_count()}
    if watch is not None:
        report = watch.report
        body["peak_threads"] = report.peak_threads
    if watch is not None and watch.debug:
        body.update(
            slow_callbacks=report.slow_callbacks,
            slow_in_app=report.slow_in_app,
            slow_elsewhere=report.slow_elsewhere,
            slow_off_cpu=report.slow_off_cpu,
            slow_in_collector=report.slow_in_collector,
            longest_collection=report.longest_collection,
            app_frames=report.app_frames,
            app_callbacks=report.app_callbacks,
            examples=report.examples,
        )
    await _answer(send, 200, body)


async def _answer(send: Send, status: int, body: dict[str, Any]) -> None:
    content = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
