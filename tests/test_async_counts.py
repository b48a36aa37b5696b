"""The async path's counts, at small sizes (the full figures are bench_async's, ``make bench``):
one TCP connection for many sequential async calls, no thread per concurrent call, one re-read of
the row per refresh however many coroutines wait for it, and no slow callback from the app's code
with asyncio's debug mode on. Counts only; no time is asserted."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from typing import Any

import pytest
from django.db import connection
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext

from django_cloudsync import aclient_for
from django_cloudsync.client import CloudSync
from django_cloudsync.models import CloudSyncToken
from django_cloudsync.sources import StoredTokenSource
from tests.helpers import ADA, expire
from tests.test_async import in_flight, run, signed_in_async, sources_of
from testsupport.loopwatch import LoopWatch

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.async_urls")]

#: The fake's delay of each API answer while calls are under way at once (seconds): long enough
#: that a call holding the event loop (or a thread) through it could not go unnoticed.
DELAY = 0.2
CALLS = 40


def threads_besides_the_fake() -> int:
    """This process's threads, leaving out the in-process fake CloudSync's (one per connection)."""
    return sum(
        1
        for thread in threading.enumerate()
        if "process_request_thread" not in thread.name and not thread.name.startswith("FakeCloudSyncServer")
    )


async def client_of(user: Any) -> CloudSync:
    client = await aclient_for(user)
    assert client is not None
    return client


def test_sequential_async_views_share_one_connection(fake: Any) -> None:
    browser = AsyncClient()
    signed_in_async(browser)
    before = fake.counters

    async def twenty_views() -> list[int]:
        return [(await browser.get("/async/workspaces/")).status_code for _ in range(20)]

    statuses = run(twenty_views())

    assert statuses == [200] * 20
    assert fake.counters["api_calls"] - before["api_calls"] == 20
    # The event loop's pool opens one connection, and every later view reuses it.
    assert fake.counters["connections"] - before["connections"] == 1


def test_concurrent_async_calls_take_no_thread_each(fake: Any, django_user_model: Any) -> None:
    signed_in_async(AsyncClient())
    user = django_user_model.objects.get()
    fake.delay_always("me", DELAY)

    async def calls_at_once() -> tuple[list[str], int, int]:
        client = await client_of(user)
        watch = LoopWatch(debug=False, thread_count=threads_besides_the_fake).start()
        idle = watch.report.peak_threads
        try:
            answers = await asyncio.gather(*(client.ame() for _ in range(CALLS)))
        finally:
            report = watch.stop()
        return [answer["id"] for answer in answers], idle, report.peak_threads

    ids, idle, peak = run(calls_at_once())

    assert ids == [ADA] * CALLS
    assert fake.counters["delayed_answers"] == CALLS
    # The watch's own thread, and at most a few of asyncio's or asgiref's: never one per call.
    assert peak - idle <= 3


@pytest.mark.parametrize("rejected", [False, True], ids=["expired", "rejected"])
def test_waiters_share_one_refresh_and_one_reread_of_the_row(fake: Any, rejected: bool) -> None:
    """50 coroutines on one expired (or rejected) token: one token request, and the row re-read
    once, by the refresh they share, not once per waiter (each re-read is a hop to the ORM's
    thread). One coming later with the old row re-reads it once, and sends no token request."""
    token = signed_in_async(AsyncClient())
    if not rejected:
        token = expire(token)
    fake.delay_next("token", DELAY)  # the waiters pile up behind the one refresh
    *sources, late = sources_of(token, 51)

    async def ask(source: StoredTokenSource) -> str:
        if rejected:
            return await source.arefresh_after_rejection("rejected")
        return await source.aget_access_token()

    async def at_once() -> tuple[list[str], dict[Any, Any]]:
        return await asyncio.gather(*(ask(source) for source in sources)), in_flight()

    # run()'s loop is async_to_sync's, so the async ORM runs in this test's thread, on the
    # connection captured here; the refresh's own queries run in a worker thread, uncaptured.
    with CaptureQueriesContext(connection) as burst:
        answers, left = run(at_once())
    with CaptureQueriesContext(connection) as later:
        late_answer = run(ask(late))

    assert len(set(answers)) == 1
    assert late_answer == answers[0] == CloudSyncToken.objects.get().access_token()
    assert fake.counters["refresh_attempts"] == fake.counters["refreshes"] == 1
    assert token_queries(burst) == 1, burst.captured_queries
    assert token_queries(later) == 1, later.captured_queries
    assert left == {}  # nothing kept once the refresh is over


def token_queries(captured: CaptureQueriesContext) -> int:
    return sum(1 for query in captured.captured_queries if CloudSyncToken._meta.db_table in query["sql"])


def test_the_loop_watch_counts_a_blocked_loop_and_blames_whose_code_blocked(
    fake: Any, django_user_model: Any
) -> None:
    """The watch can fail the test above: the app's sync client called in the loop is the app's block."""
    signed_in_async(AsyncClient())
    user = django_user_model.objects.get()
    fake.delay_always("me", DELAY)

    async def block_twice() -> Any:
        client = await client_of(user)
        async with LoopWatch() as watch:
            await asyncio.sleep(0)  # debug mode times the steps that start after it is on
            time.sleep(DELAY)  # not the app's code
            await asyncio.sleep(0)
            client.me()  # the app's sync transport, blocking the loop through the delay
            await asyncio.sleep(0)
        return watch.report

    report = run(block_twice())

    assert report.slow_callbacks == 2
    assert report.slow_elsewhere == 1
    assert report.slow_in_app == 1
    assert any(frame.startswith(("http.py", "client.py")) for frame in report.app_frames), report.app_frames


def test_the_loop_watch_blames_the_app_only_for_a_loop_thread_blocking_not_waiting() -> None:
    """The rule itself, on samples as the watcher takes them (time, the loop thread's CPU time,
    the app's frame, in a socket call): app frames on a thread off CPU and not in a socket call
    are a thread waiting for the GIL or a core, and are not the app blocking the loop."""
    watch = LoopWatch()
    watch._cpu_clock = 0  # a clock was found (start() is not called: no loop, no watcher)
    frame: str | None = "http.py:1"
    Sample = tuple[float, float, str | None, bool]
    on_cpu: list[Sample] = [(i * 0.005, i * 0.005, frame, False) for i in range(20)]
    in_socket: list[Sample] = [(i * 0.005, 0.0, frame, True) for i in range(20)]
    waiting: list[Sample] = [(i * 0.005, i * 0.001, frame, False) for i in range(20)]
    elsewhere: list[Sample] = [
        (i * 0.005, i * 0.005, frame if i % 3 == 0 else None, False) for i in range(21)
    ]
    cases: list[tuple[list[Sample], tuple[str | None, bool]]] = [
        (on_cpu, (frame, True)),
        (in_socket, (frame, True)),
        (waiting, (frame, False)),
        (elsewhere, (None, False)),
    ]
    for samples, expected in cases:
        watch._samples.clear()
        watch._samples.extend(samples)
        assert watch.app_frame_during(0.0, 1.0) == expected


def test_the_loop_watch_leaves_a_garbage_collectors_pause_to_the_collector() -> None:
    """A slow step the collector took most of is the collector's, even with the app's frames on a
    loop thread on CPU: a full collection stops every thread wherever it falls."""
    watch = LoopWatch()
    watch._cpu_clock = 0
    watch._samples.extend((i * 0.005, i * 0.005, "http.py:1", False) for i in range(20))
    record = logging.LogRecord(
        "asyncio", logging.WARNING, __file__, 1, "Executing %s took %.3f seconds", ("<Task>", 0.08), None
    )
    handler = watch._handler

    watch._collections.append((time.monotonic() - 0.07, time.monotonic()))
    handler.emit(record)  # the collector ran through most of the step that just ended
    watch._collections.clear()
    watch._samples.clear()
    now = time.monotonic()
    watch._samples.extend((now - 0.08 + i * 0.005, i * 0.005, "http.py:1", False) for i in range(17))
    handler.emit(record)  # no collection: the app's code on CPU

    assert watch.report.slow_callbacks == 2
    assert watch.report.slow_in_collector == 1
    assert watch.report.slow_in_app == 1
    assert watch.collector_seconds_during(0.0, 1.0) == 0.0


def test_the_loop_watch_times_the_collections_of_every_thread() -> None:
    """A collection holds the GIL, so one in any thread of the process holds the loop: each is timed."""

    async def collect_in_the_loop_and_beside_it() -> tuple[LoopWatch, float]:
        async with LoopWatch() as watch:
            started = time.monotonic()
            gc.collect()
            in_the_loop = watch.collector_seconds_during(started, time.monotonic())
            beside = threading.Thread(target=gc.collect)
            beside.start()
            beside.join()
        return watch, in_the_loop

    gc.disable()  # only the collections the test makes, none the allocator triggers
    try:
        watch, in_the_loop = asyncio.run(collect_in_the_loop_and_beside_it())
    finally:
        gc.enable()

    assert in_the_loop > 0
    assert len(watch._collections) == 2
    assert watch.collector_seconds_during(0.0, time.monotonic()) > in_the_loop
    assert watch.report.longest_collection > 0
    assert watch._time_collection not in gc.callbacks  # stop() took it back
