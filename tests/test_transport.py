"""The transports (``http.send`` and ``http.asend``) against a hostile CloudSync, over real HTTP.

The fake's delay switch holds an answer back or drips its body a few bytes at a time, and its
``gzip_bomb`` fault answers a small body that inflates to 16 MiB. A call ends in a typed error
within ``CLOUDSYNC_DEADLINE`` however slowly the bytes come, and a compressed body is bounded
before it is inflated; both transports, the same rules. Assertions are on what the fake counted
and what was allocated, never on the clock.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import threading
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from django_cloudsync import dialect, errors, http, wire
from django_cloudsync.client import CloudSync
from django_cloudsync.testing.fake import DRIP_CHUNK_BYTES, GZIP_BOMB_BYTES, FakeCloudSync
from tests.helpers import JSON_HEADERS
from tests.test_client import ScriptedServer
from tests.test_client import scripted as scripted  # the fixture

pytestmark = pytest.mark.usefixtures("cloudsync_settings")

#: A profile padded to a few kilobytes: dripped, it takes hundreds of small reads, each of them
#: far quicker than the read timeout (a per-read timeout alone would wait for all of them).
PADDED_PROFILE = json.dumps({"id": "usr_ada", "name": "Ada", "padding": " " * 4000}).encode()


def sync_me(api: CloudSync) -> Any:
    return api.me()


def async_me(api: CloudSync) -> Any:
    return async_to_sync(api.ame)()


#: Each test runs once per transport: the sync call, and its async twin in an event loop of its own.
CALLS = pytest.mark.parametrize("me", [sync_me, async_me], ids=["sync", "async"])


@pytest.fixture
def api(fake: FakeCloudSync) -> CloudSync:
    http.reset_session()  # an empty pool: each connection the test opens is counted
    return CloudSync(access_token=fake.issue_tokens()["access_token"], sleep=lambda _: None)


@pytest.fixture
def short_deadline(settings: Any) -> float:
    """One second for a whole call, with per-read timeouts far longer than that."""
    settings.CLOUDSYNC_DEADLINE = 1.0
    settings.CLOUDSYNC_TIMEOUT = (5.0, 10.0)
    return 1.0


def peak_bytes(action: Callable[[], Any]) -> int:
    """The most memory allocated at once while ``action`` runs (its exception is swallowed)."""
    tracemalloc.start()
    try:
        with contextlib.suppress(errors.CloudSyncError):
            action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- the deadline ----------------------------------------------------------------------------


@CALLS
def test_a_slow_drip_body_ends_in_a_timeout_within_the_deadline(
    fake: FakeCloudSync, api: CloudSync, short_deadline: float, me: Callable[[CloudSync], Any]
) -> None:
    # 4 KB in 8-byte chunks over 20 s: a chunk every 40 ms, so no single read ever times out.
    fake.respond_next("me", 200, PADDED_PROFILE, JSON_HEADERS)
    fake.delay_next("me", 20.0, drip=True)
    assert len(PADDED_PROFILE) // DRIP_CHUNK_BYTES > 400

    with pytest.raises(errors.Timeout) as caught:
        me(api)

    assert "CLOUDSYNC_DEADLINE" in str(caught.value) or "Timeout" in str(caught.value)
    # One attempt: the call's budget was spent, so the retry it is allowed was not made.
    assert fake.counters["api_calls"] == 1
    assert fake.counters["delayed_answers"] == 1


def timed_out_then_answered(api: CloudSync, twin: bool) -> tuple[type[BaseException] | None, Any]:
    """Two calls in a row, on one pool (one event loop for the twin): the first one's error, if
    any, and the second one's answer."""

    async def both() -> tuple[type[BaseException] | None, Any]:
        try:
            await api.ame()
        except errors.Timeout:
            return errors.Timeout, await api.ame()
        return None, await api.ame()

    if twin:
        return async_to_sync(both)()
    try:
        api.me()
    except errors.Timeout:
        return errors.Timeout, api.me()
    return None, api.me()


@pytest.mark.parametrize("twin", [False, True], ids=["sync", "async"])
def test_a_timed_out_connection_is_closed_not_pooled(
    fake: FakeCloudSync, api: CloudSync, short_deadline: float, twin: bool
) -> None:
    fake.respond_next("me", 200, PADDED_PROFILE, JSON_HEADERS)
    fake.delay_next("me", 20.0, drip=True)

    first, profile = timed_out_then_answered(api, twin)

    assert first is errors.Timeout
    assert profile["id"] == "usr_ada"
    # The dripping connection was hung up on: the next call needed a connection of its own
    # (reusing it would have read the rest of the drip as its answer).
    assert fake.counters["connections"] == 2
    assert fake.counters["api_calls"] == 2


@CALLS
def test_stalled_headers_end_in_a_timeout_within_the_deadline(
    fake: FakeCloudSync, api: CloudSync, short_deadline: float, me: Callable[[CloudSync], Any]
) -> None:
    fake.delay_next("me", 20.0)  # nothing at all for 20 s; the read timeout is 10 s

    with pytest.raises(errors.Timeout):
        me(api)

    assert fake.counters["api_calls"] == 1
    assert fake.counters["delayed_answers"] == 1


@CALLS
def test_a_slow_token_endpoint_is_bounded_too(
    fake: FakeCloudSync, short_deadline: float, me: Callable[[CloudSync], Any]
) -> None:
    from django_cloudsync import oauth

    tokens = fake.issue_tokens()
    fake.delay_next("token", 20.0, drip=True)

    with pytest.raises(errors.Timeout):
        oauth.refresh(
            refresh_token=tokens["refresh_token"], client_id=fake.client_id, client_secret=fake.client_secret
        )
    assert fake.counters["delayed_answers"] == 1


def test_a_retry_after_longer_than_what_is_left_is_raised_at_once(fake: FakeCloudSync, settings: Any) -> None:
    settings.CLOUDSYNC_DEADLINE = 10.0
    settings.CLOUDSYNC_MAX_RETRY_AFTER = 30.0
    waits: list[float] = []
    api = CloudSync(access_token=fake.issue_tokens()["access_token"], sleep=waits.append)
    fake.fail_next("me", "rate_limited", retry_after=20)  # allowed by the cap, not by the budget

    with pytest.raises(errors.RateLimited):
        api.me()

    assert waits == []
    assert fake.counters["api_calls"] == 1


def test_the_waits_between_retries_fit_the_budget(fake: FakeCloudSync, settings: Any) -> None:
    settings.CLOUDSYNC_DEADLINE = 10.0
    waits: list[float] = []
    api = CloudSync(access_token=fake.issue_tokens()["access_token"], sleep=waits.append, max_retries=5)
    fake.fail_next("me", "rate_limited", retry_after=4, times=1)
    fake.fail_next("me", "rate_limited", retry_after=8, times=1)  # 4 + 8 would not fit in 10

    with pytest.raises(errors.RateLimited):
        api.me()

    assert waits == [4.0]
    assert fake.counters["api_calls"] == 2


def test_a_client_deadline_overrides_the_setting(fake: FakeCloudSync, settings: Any) -> None:
    settings.CLOUDSYNC_DEADLINE = 1000.0
    waits: list[float] = []
    api = CloudSync(access_token=fake.issue_tokens()["access_token"], sleep=waits.append, deadline=2.0)
    fake.fail_next("me", "rate_limited", retry_after=3)

    with pytest.raises(errors.RateLimited):
        api.me()

    assert api.deadline == 2.0
    assert waits == []


@pytest.mark.parametrize("value", [0, -1, float("nan")])
def test_a_deadline_must_be_positive(settings: Any, fake: FakeCloudSync, value: float) -> None:
    with pytest.raises(ValueError, match="deadline"):
        CloudSync(api_key="sk_test_x", deadline=value)
    settings.CLOUDSYNC_DEADLINE = value
    with pytest.raises(errors.ConfigurationError, match="CLOUDSYNC_DEADLINE"):
        CloudSync(api_key="sk_test_x").me()
    assert fake.counters["api_calls"] == 0


# -- bounded before decompression ------------------------------------------------------------


@CALLS
def test_a_gzip_bomb_is_refused_with_bounded_memory(
    fake: FakeCloudSync, api: CloudSync, me: Callable[[CloudSync], Any]
) -> None:
    fake.fail_next("me", "gzip_bomb")
    limit = 1024 * 1024  # CLOUDSYNC_MAX_RESPONSE_BYTES's default

    with pytest.raises(errors.InvalidResponse, match="larger than allowed"):
        me(api)
    fake.fail_next("me", "gzip_bomb")
    peak = peak_bytes(lambda: me(api))

    # It inflates to 16 MiB; at most the limit (and a chunk) of it is ever inflated.
    assert 16 * limit <= GZIP_BOMB_BYTES
    assert peak < 3 * limit, f"{peak / 2**20:.1f} MiB allocated to refuse a gzip bomb"
    assert fake.counters["faults_injected"] == 2


def stacked_bomb() -> bytes:
    inner = gzip.compress(b'{"id": "usr_ada", "pad": "' + b" " * (64 * 1024 * 1024) + b'"}', 9)
    return gzip.compress(inner, 9)


@CALLS
def test_stacked_content_codings_are_refused_before_inflating_anything(
    fake: FakeCloudSync, api: CloudSync, me: Callable[[CloudSync], Any]
) -> None:
    # "gzip, gzip": a few hundred bytes that inflate to 64 MiB in two steps (the review's 2.1 GB
    # with urllib3 2.5 came from such a body). One coding was asked for; two are refused unread.
    body = stacked_bomb()
    assert len(body) < 16 * 1024
    fake.respond_next("me", 200, body, [*JSON_HEADERS, ("Content-Encoding", "gzip, gzip")])
    fake.respond_next("me", 200, body, [*JSON_HEADERS, ("Content-Encoding", "gzip, gzip")])

    with pytest.raises(errors.InvalidResponse, match="content coding"):
        me(api)
    peak = peak_bytes(lambda: me(api))

    assert peak < 512 * 1024, f"{peak / 2**20:.1f} MiB allocated to refuse a stacked coding"


@CALLS
@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, identity, gzip"])
def test_content_codings_not_asked_for_are_refused(
    fake: FakeCloudSync, api: CloudSync, me: Callable[[CloudSync], Any], coding: str
) -> None:
    fake.respond_next("me", 200, b'{"id": "usr_ada"}', [*JSON_HEADERS, ("Content-Encoding", coding)])

    with pytest.raises(errors.InvalidResponse, match="content coding"):
        me(api)


@CALLS
@pytest.mark.parametrize(
    ("coding", "compress"),
    [
        ("gzip", lambda data: gzip.compress(data)),
        ("GZip", lambda data: gzip.compress(data) + gzip.compress(b"")),  # two members
        ("deflate", zlib.compress),
        ("identity", lambda data: data),
    ],
)
def test_a_compressed_answer_is_decoded(
    fake: FakeCloudSync,
    api: CloudSync,
    me: Callable[[CloudSync], Any],
    coding: str,
    compress: Callable[[bytes], bytes],
) -> None:
    body = compress(json.dumps({"id": "usr_ada", "name": "Ada"}).encode())
    fake.respond_next("me", 200, body, [*JSON_HEADERS, ("Content-Encoding", coding)])

    assert me(api) == {"id": "usr_ada", "name": "Ada"}


@CALLS
def test_the_transports_ask_only_for_the_codings_they_decode(
    scripted: ScriptedServer, me: Callable[[CloudSync], Any]
) -> None:
    scripted.answer(200, {"id": "usr_1"})

    assert me(CloudSync(api_key="sk_test_key", base_url=scripted.url)) == {"id": "usr_1"}

    sent = {name.lower(): value for name, value in scripted.requests[0]["headers"].items()}
    assert sent["accept-encoding"] == wire.ACCEPT_ENCODING == "gzip, deflate"
    assert sent["user-agent"] == http.USER_AGENT


@CALLS
def test_a_truncated_compressed_body_is_invalid(
    fake: FakeCloudSync, api: CloudSync, me: Callable[[CloudSync], Any]
) -> None:
    body = gzip.compress(json.dumps({"id": "usr_ada"}).encode())[:-12]  # no end of stream
    fake.respond_next("me", 200, body, [*JSON_HEADERS, ("Content-Encoding", "gzip")])

    with pytest.raises(errors.InvalidResponse, match="decode"):
        me(api)


@CALLS
def test_a_declared_length_over_the_limit_is_refused_unread(
    fake: FakeCloudSync, api: CloudSync, me: Callable[[CloudSync], Any], settings: Any
) -> None:
    settings.CLOUDSYNC_MAX_RESPONSE_BYTES = 1024
    fake.respond_next("me", 200, b" " * 4096 + b'{"id": "usr_ada"}', JSON_HEADERS)

    with pytest.raises(errors.InvalidResponse, match="larger than allowed"):
        me(api)


# -- the bounded body on its own -------------------------------------------------------------


def test_a_bounded_body_never_inflates_past_its_limit() -> None:
    bomb = gzip.compress(b" " * (8 * 1024 * 1024))
    body = wire.BoundedBody("gzip", 1000)
    chunks = [bomb[start : start + 512] for start in range(0, len(bomb), 512)]
    with pytest.raises(errors.InvalidResponse, match="larger than allowed"):
        list(map(body.feed, chunks))
    assert len(body._decoded) == 1001  # one byte past the limit, to know it is over: no more


def test_a_bounded_body_counts_wire_bytes() -> None:
    body = wire.BoundedBody(None, 10, status=200)
    body.feed(b"0123456789")
    with pytest.raises(errors.InvalidResponse) as caught:
        body.feed(b"x")
    assert caught.value.status == 200
    assert wire.BoundedBody(None, 10).content() == b""


def test_a_deadline_bounds_every_wait_and_counts_the_waits_scheduled() -> None:
    deadline = wire.Deadline(30.0)
    assert 0 < deadline.bound(5.0) <= 5.0
    assert 29 < deadline.bound(100.0) <= 30.0
    assert not deadline.schedule_wait(31.0)
    assert deadline.schedule_wait(20.0)
    assert 9 < deadline.remaining() <= 10
    assert not deadline.schedule_wait(10.0)  # nothing would be left for the attempt after it
    with pytest.raises(ValueError, match="positive"):
        wire.Deadline(0)


class _CutShortHandler(BaseHTTPRequestHandler):
    """Announces a 100-byte JSON body, sends a few bytes of it and hangs up."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "100")
        self.end_headers()
        self.wfile.write(b'{"id": "usr')
        self.close_connection = True


@pytest.fixture
def cut_short() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CutShortHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@CALLS
def test_a_body_cut_short_is_a_network_error(cut_short: str, me: Callable[[CloudSync], Any]) -> None:
    api = CloudSync(api_key="sk_test_abc", base_url=cut_short, max_retries=0)

    with pytest.raises(errors.NetworkError) as caught:
        me(api)

    assert "sk_test_abc" not in str(caught.value)


@CALLS
def test_an_answer_that_closes_its_connection_is_read_in_full(
    scripted: ScriptedServer, me: Callable[[CloudSync], Any]
) -> None:
    # "Connection: close": http.client lets go of the connection's socket before the body is read.
    for _ in range(2):
        scripted.answer(200, {"id": "usr_ada"}, {"Connection": "close"})
    api = CloudSync(api_key="sk_test_abc", base_url=scripted.url)

    assert me(api)["id"] == "usr_ada"
    assert me(api)["id"] == "usr_ada"
    assert len(scripted.requests) == 2


# -- paths: refused before any request -------------------------------------------------------

ENCODED_PATHS = [
    "/v1/files/..%2F..%2Fx",
    "/v1/files/..%2f..%2fx",
    "/v1/files/%2e%2e%2fadmin",
    "/v1/files/%2E%2E/admin",
    "/v1/files/.%2e/admin",
    "/v1/files/%2e/x",
    "/v1/files%5c..%5cadmin",
    "/v1/files/%5C",
    "/v1/files/%252e%252e%252fadmin",
    "/v1/files;jsessionid=x",
    "/v1/files/..;/admin",
    "/v1/files/%3b/x",
    "/v1\\files",
    "/v1",
    "/v1/",
    "/v2/me",
    "/oauth/token",
    "/v1x/me",
]


@pytest.mark.parametrize("path", ENCODED_PATHS)
def test_encoded_and_escaping_paths_are_refused_before_any_request(
    fake: FakeCloudSync, api: CloudSync, path: str
) -> None:
    with pytest.raises(ValueError, match="path"):
        api.get(path)
    with pytest.raises(ValueError, match="path"):
        async_to_sync(api.aget)(path)
    assert fake.counters["api_calls"] == 0
    assert fake.counters["connections"] == 0


@pytest.mark.parametrize(
    "path", ["/v1/me", "/v1/files/a%20b", "/v1/files?path=a%2Fb;c", "/v1/files/report.v2.json"]
)
def test_ordinary_api_paths_pass(path: str) -> None:
    wire.check_path(path)


def test_an_api_path_still_reaches_the_api(fake: FakeCloudSync, api: CloudSync) -> None:
    assert api.get(dialect.ME_PATH, params={"q": "a/b;c"})["id"] == "usr_ada"
