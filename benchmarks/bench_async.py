"""The async path under uvicorn: the middleware's cost, connections, the refresh race, a storm.

Every figure runs the benchmark site (``benchmarks.asgi``) under uvicorn, started here as a
subprocess on a free loopback port with the benchmark settings, against the runner's fake
CloudSync, which counts token requests and the TCP connections it accepts; its delay switch holds
``GET /v1/me`` answers back for the storm. Threads are counted by the worker itself
(``/proc/self/status``, sampled every 5 ms by :class:`~testsupport.loopwatch.LoopWatch`), which
also runs the event loop in asyncio's debug mode for the storm and the races.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
from django.db import connections

from django_cloudsync.models import CloudSyncToken

from . import seed
from .bench_requests import _session_cookie
from .context import Context
from .measure import paired_ratio
from .report import Row

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT_ID = "usr_bench_async"
RACE_ACCOUNT_ID = "usr_bench_async_race"
#: The figures as the issue states them.
SEQUENTIAL_CALLS = 500
STORM_VIEWS = 200
STORM_DELAY = 0.2
RACE_WORKERS = 4
RACE_COROUTINES = 100
#: "No thread per call": the storm may add at most this many threads to the idle worker.
THREAD_ALLOWANCE = 5
#: "Close to one delay": the time may exceed the hand-rolled views' (the same Django, the same
#: HTTP library, no app) by this factor at most. One delay itself is out of reach on any Django
#: site (the sleeping views show Django's own floor) and for any HTTP library's per-call work.
CLOSE_TO_HANDROLLED = 1.1
#: The fake's counters each storm reports.
COUNTED = ("api_calls", "connections", "delayed_answers")
#: Rounds of the storms, for the medians.
STORM_REPEATS = 5
#: Bounds on every wait: a worker's start, one request, the storm.
START_TIMEOUT = 120.0
REQUEST_TIMEOUT = 60.0


def run(context: Context) -> list[Row]:
    seed.wipe()
    user = seed.connected_user(context.fake, ACCOUNT_ID)
    cookie = _session_cookie(user)
    repeats = 2 if context.quick else STORM_REPEATS
    with uvicorn_workers(context, 1) as (url,):
        rows = [
            _time_ratio(url, cookie, context),
            _sequential_connections(url, cookie, context),
            _storm_row(_storm(url, cookie, context, repeats=repeats), repeats),
        ]
    # The storm again, for the event loop's sake: debug mode slows every step, so its times are
    # not the figure above.
    with uvicorn_workers(context, 1, loop_debug=True) as (url,):
        debug_storm = _storm(url, cookie, context, repeats=1)
    loops = [{"label": "one view gathering 200 calls", **debug_storm["gathered"]}]
    for label, alias, skip_reason in context.databases():
        figure = (
            f"token-endpoint calls, {RACE_WORKERS} uvicorn workers x {RACE_COROUTINES} coroutines "
            f"on one expired token, {label}"
        )
        if alias is None:
            rows.append(Row(figure, "1; 400 of 400 ok", f"skipped: {skip_reason}", "—", met=None))
            continue
        race_row, race_loops = _race(context, alias, figure, label)
        rows.append(race_row)
        loops.extend(race_loops)
    rows.append(_loop_row(loops, debug_storm["views"], debug_storm["handrolled_gathered"]))
    seed.wipe()
    return rows


# -- the workers -------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def uvicorn_workers(
    context: Context, count: int, *, alias: str = "default", loop_debug: bool = False
) -> Iterator[list[str]]:
    """``count`` uvicorn processes of one worker each, on ``alias``; their base URLs.

    One process each rather than ``--workers``: uvicorn's workers share one socket and the
    kernel picks the worker of each request, so "100 coroutines in each of 4 workers" could not be
    arranged; four servers on four ports are four workers the benchmark can address.
    """
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "CLOUDSYNC_BENCH_ASGI_DATABASE": alias,
        "CLOUDSYNC_BENCH_LOOP_DEBUG": "1" if loop_debug else "0",
    }
    started: list[tuple[subprocess.Popen[bytes], str, Any]] = []
    try:
        for _ in range(count):
            port = free_port()
            log = (context.workdir / f"uvicorn-{port}.log").open("wb")
            command = [sys.executable, "-m", "uvicorn", "benchmarks.asgi:application"]
            command += ["--host", "127.0.0.1", "--port", str(port), "--lifespan", "on"]
            command += ["--log-level", "warning", "--no-access-log", "--timeout-keep-alive", "60"]
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
            started.append((process, f"http://127.0.0.1:{port}", log))
        for process, url, _ in started:
            _wait_until_up(process, url)
        yield [url for _, url, _ in started]
    finally:
        for process, _, log in started:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            log.close()


def _wait_until_up(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with status {process.returncode} (see its log)")
        with suppress(httpx2.HTTPError):
            if httpx2.get(url + "/_bench/stats", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"uvicorn did not answer on {url} within {START_TIMEOUT:.0f} s")


def stats(url: str, *, reset: bool = False) -> dict[str, Any]:
    answer = httpx2.get(url + ("/_bench/reset" if reset else "/_bench/stats"), timeout=REQUEST_TIMEOUT)
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


class KeepAlive:
    """GET requests on one keep-alive connection: the cheapest client, the same for both sides."""

    def __init__(self, url: str, cookie: str) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(
            parts.hostname or "", parts.port, timeout=REQUEST_TIMEOUT
        )
        self.headers = {"Cookie": cookie, "Host": "127.0.0.1"}

    def get(self, path: str) -> bytes:
        self.connection.request("GET", path, headers=self.headers)
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}")
        return body

    def close(self) -> None:
        self.connection.close()


# -- the figures -------------------------------------------------------------------------------


def _time_ratio(url: str, cookie: str, context: Context) -> Row:
    pairs = 400 if context.quick else 2000
    client = KeepAlive(url, cookie)
    results = []
    try:
        for label, path in (
            ("async page not using request.user", "/bench/async/untouched/"),
            ("async page using await request.auser()", "/bench/async/username/"),
        ):

            def with_it(path: str = path) -> object:
                return client.get("/with" + path)

            def without_it(path: str = path) -> object:
                return client.get("/without" + path)

            results.append((label, paired_ratio(with_it, without_it, pairs=pairs)))
    finally:
        client.close()
    worst = max(ratio.median_ratio for _, ratio in results)
    return Row(
        figure="time per request under uvicorn (1 worker) with / without the middleware, async view "
        "not using it (median ratio)",
        target="≤ 1.02",
        app="; ".join(f"{ratio.median_ratio:.3f} ({label})" for label, ratio in results),
        handrolled="1 (no middleware)",
        met=worst <= 1.02,
        notes=[
            f"{pairs:,} pairs of signed-in requests per page over one keep-alive connection, each pair one "
            "request to the site with and one to the same worker's site without the middleware "
            "(benchmarks/asgi.py serves both); median of the pair ratios. "
            + "; ".join(
                f"{label}: {ratio.second_per_call * 1e6:.0f} µs without, "
                f"{ratio.first_per_call * 1e6:.0f} µs with"
                for label, ratio in results
            )
            + "."
        ],
    )


def _sequential_connections(url: str, cookie: str, context: Context) -> Row:
    fake = context.fake
    client = KeepAlive(url, cookie)
    before = fake.counters
    try:
        for _ in range(SEQUENTIAL_CALLS):
            client.get("/with/bench/async/me/")
    finally:
        client.close()
    after = fake.counters
    new_connections = after["connections"] - before["connections"]
    api_calls = after["api_calls"] - before["api_calls"]
    return Row(
        figure=f"new TCP connections to the API, {SEQUENTIAL_CALLS} sequential async views in one "
        "uvicorn worker, one ame() each",
        target="1",
        app=str(new_connections),
        handrolled="—",
        met=new_connections == 1 and api_calls == SEQUENTIAL_CALLS,
        notes=[
            f"API calls seen by the fake: {api_calls}; the worker's first API calls, so its event loop's "
            "pool starts empty."
        ],
    )


async def _concurrently(
    url: str, cookie: str, path: str, count: int
) -> tuple[float, Counter[str], list[bytes]]:
    """``count`` GETs of ``path`` at once; the time until the last answer, the statuses, the 200 bodies."""
    limits = httpx2.Limits(max_connections=count, max_keepalive_connections=count)
    timeout = httpx2.Timeout(REQUEST_TIMEOUT)
    async with httpx2.AsyncClient(
        base_url=url, headers={"Cookie": cookie}, limits=limits, timeout=timeout
    ) as web:
        bodies: list[bytes] = []

        async def one() -> str:
            try:
                answer = await web.get(path)
            except httpx2.HTTPError as exc:
                return type(exc).__name__
            if answer.status_code == 200:
                bodies.append(answer.content)
            return str(answer.status_code)

        started = time.perf_counter()
        statuses = Counter(await asyncio.gather(*(one() for _ in range(count))))
        return time.perf_counter() - started, statuses, bodies


def _storm(url: str, cookie: str, context: Context, *, repeats: int) -> dict[str, dict[str, Any]]:
    """The worker's stats over five storms, the fake delaying every ``GET /v1/me``.

    ``views``: 200 concurrent requests to a view making one API call. ``handrolled``: the same
    views calling the API the hand-rolled way (``benchmarks.handrolled``: the stored
    ``SocialToken``, a pooled ``httpx2`` client), which is what the library itself costs.
    ``sleeping``: the same views awaiting a sleep as long as the delay instead of the API: the
    threads and the time that Django itself takes for 200 requests under way at once.
    ``gathered`` and ``handrolled_gathered``: one request whose view makes 200 API calls at once,
    through the app and the hand-rolled way: the app's share alone. The storms take turns,
    ``repeats`` rounds of them; ``elapsed`` is each storm's median, the counts its last round's.
    """
    fake = context.fake
    for path in (
        "/with/bench/async/me/",
        "/with/bench/async/handrolled-me/",
        "/with/bench/async/sleep/?seconds=0",
    ):
        KeepAlive(url, cookie).get(path)  # warm: URL resolvers, the pools' first connections
    fake.delay_always("me", STORM_DELAY)
    phases = {
        "views": ("/with/bench/async/me/", STORM_VIEWS),
        "handrolled": ("/with/bench/async/handrolled-me/", STORM_VIEWS),
        "sleeping": (f"/with/bench/async/sleep/?seconds={STORM_DELAY}", STORM_VIEWS),
        "gathered": (f"/with/bench/async/gather/?n={STORM_VIEWS}", 1),
        "handrolled_gathered": (f"/with/bench/async/handrolled-gather/?n={STORM_VIEWS}", 1),
    }
    results: dict[str, dict[str, Any]] = {}
    times: dict[str, list[float]] = {phase: [] for phase in phases}
    try:
        for _ in range(repeats):
            for phase, (path, requests) in phases.items():
                idle = stats(url, reset=True)["threads"]
                before = fake.counters
                elapsed, statuses, bodies = asyncio.run(_concurrently(url, cookie, path, requests))
                after = fake.counters
                times[phase].append(elapsed)
                results[phase] = {
                    **stats(url),
                    "idle": idle,
                    "statuses": statuses,
                    "outcomes": sum((Counter(json.loads(body)["outcomes"]) for body in bodies), Counter())
                    if requests == 1
                    else statuses,
                    **{key: after[key] - before[key] for key in COUNTED},
                }
    finally:
        fake.clear_delays()
    for phase, rounds in times.items():
        results[phase]["elapsed"] = statistics.median(rounds)
    return results


def _storm_row(storm: dict[str, dict[str, Any]], repeats: int) -> Row:
    views, handrolled, sleeping = storm["views"], storm["handrolled"], storm["sleeping"]
    gathered, handrolled_gathered = storm["gathered"], storm["handrolled_gathered"]

    def above(phase: dict[str, Any]) -> int:
        return int(phase["peak_threads"] - phase["idle"])

    def ratio(phase: dict[str, Any]) -> float:
        return float(phase["elapsed"]) / STORM_DELAY

    over_sleeping = views["peak_threads"] - sleeping["peak_threads"]
    over_handrolled = views["elapsed"] / handrolled["elapsed"]
    gathered_over_handrolled = gathered["elapsed"] / handrolled_gathered["elapsed"]
    ok = views["statuses"].get("200", 0)
    gathered_ok = gathered["outcomes"].get("ok", 0)
    return Row(
        figure=f"{STORM_VIEWS} concurrent async views, each waiting on one API answer delayed "
        f"{STORM_DELAY * 1000:.0f} ms: total time / one delay; worker's peak threads above idle",
        target=f"close to 1: ≤ {CLOSE_TO_HANDROLLED} x the hand-rolled time, for the views and for one "
        f"view gathering the calls; ≤ {THREAD_ALLOWANCE} threads above idle, over the sleeping views",
        app=f"{ratio(views):.1f} x ({over_handrolled:.2f} x hand-rolled; sleeping instead: "
        f"{ratio(sleeping):.1f} x); +{above(views)} threads, +{over_sleeping} over the views sleeping "
        f"instead. {STORM_VIEWS} calls gathered in one view: {ratio(gathered):.1f} x "
        f"({gathered_over_handrolled:.2f} x hand-rolled); +{above(gathered)} threads",
        handrolled=f"{ratio(handrolled):.1f} x; gathered in one view: {ratio(handrolled_gathered):.1f} x",
        met=ok == STORM_VIEWS
        and gathered_ok == STORM_VIEWS
        and over_sleeping <= THREAD_ALLOWANCE
        and above(gathered) <= THREAD_ALLOWANCE
        and over_handrolled <= CLOSE_TO_HANDROLLED
        and gathered_over_handrolled <= CLOSE_TO_HANDROLLED,
        notes=[
            f"Medians of {repeats} rounds, the five storms taking turns. {ok} of {STORM_VIEWS} views "
            f"answered 200 ({_statuses(views['statuses'])}) in {views['elapsed'] * 1000:.0f} ms; API calls "
            f"{views['api_calls']}, new TCP connections to the API {views['connections']}. Hand-rolled "
            f"({_statuses(handrolled['statuses'])}): {handrolled['elapsed'] * 1000:.0f} ms. The same "
            f"{STORM_VIEWS} views awaiting asyncio.sleep({STORM_DELAY}) instead "
            f"({_statuses(sleeping['statuses'])}): {sleeping['elapsed'] * 1000:.0f} ms. One view making the "
            f"{STORM_VIEWS} calls at once ({_statuses(gathered['outcomes'])}): "
            f"{gathered['elapsed'] * 1000:.0f} ms, new TCP connections {gathered['connections']}; "
            f"hand-rolled ({_statuses(handrolled_gathered['outcomes'])}): "
            f"{handrolled_gathered['elapsed'] * 1000:.0f} ms. "
            f"Threads (/proc/self/status, sampled every 5 ms): idle {views['idle']}; peak "
            f"{views['peak_threads']} with the views calling the API, {handrolled['peak_threads']} "
            f"hand-rolled, {sleeping['peak_threads']} sleeping, {gathered['peak_threads']} with the one "
            "view. "
            "Django runs each ASGI request's sync parts (the request signals' database handling, the "
            "session middleware, the async ORM) on a thread of that request's own (asgiref's "
            "ThreadSensitiveContext) while it lasts, with or without this app, so 200 requests at once "
            "take 200 threads and their time in turns for the GIL; the API calls add none. The one view "
            "gathering the calls has no such floor: what remains above one delay is the HTTP library's "
            "own work per call (httpx2's pool and streams, which the hand-rolled view pays too) and the "
            "fake's, on the machine's cores. The async client's pool holds up to "
            "CLOUDSYNC_ASYNC_MAX_CONNECTIONS (256) connections per event loop, so the 200 gathered calls "
            "are all under way at once."
        ],
    )


def _statuses(statuses: Counter[str]) -> str:
    return ", ".join(f"{count} x {status}" for status, count in statuses.most_common())


def _race(context: Context, alias: str, figure: str, label: str) -> tuple[Row, list[dict[str, Any]]]:
    fake = context.fake
    seed.wipe(alias)
    user = seed.connected_user(fake, RACE_ACCOUNT_ID, alias=alias)
    seed.expire_all(alias)
    version_before = CloudSyncToken.objects.using(alias).get(social_account__user=user).version
    connections.close_all()  # the parent holds no lock or snapshot the workers wait on
    with uvicorn_workers(context, RACE_WORKERS, alias=alias, loop_debug=True) as urls:
        query = f"?user={user.pk}&n={RACE_COROUTINES}&race={alias}"
        for url in urls:
            KeepAlive(url, "").get("/with/bench/async/race/load/" + query)
            stats(url, reset=True)
        before = fake.counters
        outcomes = _go_at_once([url + "/with/bench/async/race/go/" + query for url in urls])
        after = fake.counters
        loops = [
            {"label": f"race {label} worker {index + 1}", **stats(url)} for index, url in enumerate(urls)
        ]
    version_moves = (
        CloudSyncToken.objects.using(alias).get(social_account__user=user).version - version_before
    )
    seed.wipe(alias)
    counts = {key: after[key] - before[key] for key in ("token_requests", "refreshes", "invalid_grants")}
    everyone = RACE_WORKERS * RACE_COROUTINES
    ok = outcomes.get("ok", 0)
    return (
        Row(
            figure=figure,
            target=f"1; {everyone} of {everyone} ok",
            app=f"{counts['token_requests']}; {ok} of {everyone} ok",
            handrolled="—",
            met=counts["token_requests"] == 1 and ok == everyone and counts["invalid_grants"] == 0,
            notes=[
                f"{label}: successful refreshes {counts['refreshes']}, invalid_grant answers "
                f"{counts['invalid_grants']}; calls: {_statuses(outcomes)}; the stored row's version moved "
                f"by {version_moves}. Each worker loaded {RACE_COROUTINES} clients with aclient_for() "
                "first, then all four were told to go at once."
            ],
        ),
        loops,
    )


def _go_at_once(urls: list[str]) -> Counter[str]:
    """GET every URL at the same moment, one thread each; the merged outcomes they report."""
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(len(urls), timeout=REQUEST_TIMEOUT)

    def go(url: str) -> None:
        with httpx2.Client(timeout=REQUEST_TIMEOUT) as web:
            barrier.wait()
            try:
                answer = web.get(url)
                found = Counter(answer.json()["outcomes"]) if answer.status_code == 200 else None
            except (httpx2.HTTPError, ValueError, KeyError) as exc:
                found = Counter({f"worker failed: {type(exc).__name__}": RACE_COROUTINES})
            if found is None:
                found = Counter({f"worker answered {answer.status_code}": RACE_COROUTINES})
        with lock:
            outcomes.update(found)

    threads = [threading.Thread(target=go, args=(url,)) for url in urls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=REQUEST_TIMEOUT * 2)
    return outcomes


def _loop_row(
    loops: list[dict[str, Any]], views_storm: dict[str, Any], handrolled_gathered: dict[str, Any]
) -> Row:
    def summary(watched: list[dict[str, Any]]) -> dict[str, Any]:
        counts = {
            key: sum(loop[key] for loop in watched)
            for key in (
                "slow_callbacks",
                "slow_in_app",
                "slow_elsewhere",
                "slow_off_cpu",
                "slow_in_collector",
            )
        }
        frames = sorted({frame for loop in watched for frame in loop["app_frames"]})
        longest = max(loop["longest_collection"] for loop in watched)
        return {**counts, "frames": frames, "longest": longest}

    def frames_of(seen: dict[str, Any]) -> str:
        return f" (app frames: {', '.join(seen['frames'])})" if seen["frames"] else ""

    watched, storm, bare = summary(loops), summary([views_storm]), summary([handrolled_gathered])
    # A call that blocked the loop on the network would hold it through the fake's delay.
    through_a_delay = sorted(
        f"{frame} ({seconds * 1000:.0f} ms)"
        for loop in loops
        for seconds, frame in loop["app_callbacks"]
        if seconds >= STORM_DELAY
    )
    examples = [example for loop in [*loops, views_storm] for example in loop["examples"]][:2]
    note = (
        f"Event loops watched: {', '.join(loop['label'] for loop in loops)}. asyncio's debug mode logged "
        f"{watched['slow_callbacks']} slow callbacks (≥ 50 ms) in all. The garbage collector took at least "
        f"half of {watched['slow_in_collector']} of them (full collections of the worker's heap, which debug "
        f"mode's bookkeeping swells: the longest {watched['longest'] * 1000:.0f} ms), stopping every thread "
        "wherever it fell. Of the others, a thread sampling the loop thread's stack every 5 ms found this "
        f"app's code running with the loop thread blocking (on CPU, or in a socket call, for most of it) in "
        f"{watched['slow_in_app']}, other code or a loop thread waiting in "
        f"{watched['slow_elsewhere'] - watched['slow_in_collector']} ({watched['slow_off_cpu']} of which "
        "had the app's frames on the stack but the loop thread off CPU, waiting for the GIL or a core)"
        + frames_of(watched)
        + f". The hand-rolled view gathering the same calls (httpx2 alone): {bare['slow_callbacks']} slow "
        f"callbacks, {bare['slow_in_collector']} of them the collector's. The {STORM_VIEWS}-view storm, "
        f"where Django's {STORM_VIEWS} request threads contend for the GIL and a step of the loop waits for "
        f"it wherever it stands: {storm['slow_callbacks']} slow callbacks, {storm['slow_in_collector']} the "
        f"collector's, {storm['slow_in_app']} with this app's code blocking ({storm['slow_off_cpu']} with "
        "the app's frames, off CPU)" + frames_of(storm) + ". The app's slow callbacks that lasted "
        f"{STORM_DELAY * 1000:.0f} ms or more: {', '.join(through_a_delay) or 'none'}."
    )
    if examples:
        note += " Examples: " + " / ".join(json.dumps(example) for example in examples)
    return Row(
        figure="slow callbacks (≥ 50 ms) from this app's code, asyncio debug mode: 200 calls in one "
        "view, the races (the 200-view storm: see the note)",
        target="0",
        app=f"{watched['slow_in_app']} (of {watched['slow_callbacks']} logged, "
        f"{watched['slow_in_collector']} of them the garbage collector's; {len(through_a_delay)} of the "
        f"app's ≥ {STORM_DELAY * 1000:.0f} ms); the 200-view storm: {storm['slow_in_app']} "
        f"(of {storm['slow_callbacks']})",
        handrolled="—",
        met=watched["slow_in_app"] == 0,
        notes=[note],
    )
