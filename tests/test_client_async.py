"""The client's async twins (``ame``, ``aworkspaces``, ``aget``, ``apost``, ``aput``, ``apatch``,
``adelete``) over real HTTP, against the fake CloudSync and a scripted server.

Each test runs its coroutine with asgiref's ``async_to_sync`` (Django's own dependency), which
gives it an event loop of its own and closes it after, as ``asyncio.run`` does: so each test also
starts with an empty pool. Only the sleep between retries is replaced, to count the waits.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx2
import pytest
from asgiref.sync import async_to_sync

from django_cloudsync import dialect, errors, http, policy
from django_cloudsync.client import AsyncTokenSource, CloudSync
from django_cloudsync.testing.fake import FakeCloudSync
from tests.test_client import ALL_SCOPES, MemoryTokenSource, ScriptedServer, new_api_key
from tests.test_client import scripted as scripted  # the fixture

pytestmark = pytest.mark.usefixtures("cloudsync_settings")

T = TypeVar("T")


def run(coroutine_function: Callable[[], Awaitable[T]]) -> T:
    """Await ``coroutine_function()`` in a new event loop, closed after (``asyncio.run`` semantics)."""

    async def main() -> T:
        return await coroutine_function()

    return async_to_sync(main)()


class AsyncSleeps(list[float]):
    """Records the waits between retries instead of sleeping."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


class AsyncMemoryTokenSource(MemoryTokenSource):
    """The memory source with async twins: the client awaits these instead of using a thread."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.awaited: list[str] = []

    async def aget_access_token(self) -> str:
        self.awaited.append("aget_access_token")
        return self.get_access_token()

    async def arefresh_after_rejection(self, rejected_token: str) -> str:
        self.awaited.append("arefresh_after_rejection")
        # The sync refresh does blocking HTTP: off the loop, as a real async source would not need.
        return await asyncio.to_thread(self.refresh_after_rejection, rejected_token)


class ThreadRecordingSource(MemoryTokenSource):
    """A sync-only source that notes which thread each of its calls ran on."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.threads: list[int] = []

    def get_access_token(self) -> str:
        self.threads.append(threading.get_ident())
        return super().get_access_token()

    def refresh_after_rejection(self, rejected_token: str) -> str:
        self.threads.append(threading.get_ident())
        return super().refresh_after_rejection(rejected_token)


@pytest.fixture
def tokens(fake: FakeCloudSync) -> dict[str, Any]:
    return fake.issue_tokens(scope=ALL_SCOPES)


@pytest.fixture
def asleeps() -> AsyncSleeps:
    return AsyncSleeps()


@pytest.fixture
def client(tokens: dict[str, Any], asleeps: AsyncSleeps) -> CloudSync:
    return CloudSync(access_token=tokens["access_token"], asleep=asleeps)


# -- the twins -------------------------------------------------------------------------------


def test_ame_and_aworkspaces_read_the_api(fake: FakeCloudSync, client: CloudSync) -> None:
    async def calls() -> tuple[Any, Any, Any]:
        return await client.ame(), await client.aworkspaces(), await client.aget(dialect.ME_PATH)

    me, workspaces, raw = run(calls)

    assert me["id"] == raw["id"] == fake.current_user_id
    assert isinstance(workspaces, list)
    assert fake.api_calls_by_path == {dialect.ME_PATH: 2, dialect.WORKSPACES_PATH: 1}


def test_apost_sends_json(fake: FakeCloudSync, client: CloudSync) -> None:
    created = run(lambda: client.apost(dialect.WORKSPACES_PATH, json={"name": "Research"}))

    assert created["name"] == "Research"
    assert {"id": created["id"], "name": "Research"} in run(client.aworkspaces)


def test_each_twin_sends_its_method_body_and_query(scripted: ScriptedServer) -> None:
    for _ in range(5):
        scripted.answer(200, {"ok": True})
    api = CloudSync(api_key=new_api_key(), base_url=scripted.url)

    async def calls() -> list[Any]:
        return [
            await api.aget("/v1/files", params={"q": "a b"}),
            await api.apost("/v1/files", json={"n": 1}),
            await api.aput("/v1/files/f1", json={"n": 2}),
            await api.apatch("/v1/files/f1", json={"n": 3}),
            await api.adelete("/v1/files/f1"),
        ]

    assert run(calls) == [{"ok": True}] * 5
    sent = [(r["method"], r["path"], r["body"]) for r in scripted.requests]
    assert sent == [
        ("GET", "/v1/files?q=a+b", b""),
        ("POST", "/v1/files", b'{"n":1}'),
        ("PUT", "/v1/files/f1", b'{"n":2}'),
        ("PATCH", "/v1/files/f1", b'{"n":3}'),
        ("DELETE", "/v1/files/f1", b""),
    ]
    headers = scripted.requests[0]["headers"]
    assert headers["Authorization"].startswith("Bearer sk_test_")
    assert headers["Accept"] == "application/json"


def test_an_empty_answer_is_none(scripted: ScriptedServer) -> None:
    scripted.answer(204)
    assert (
        run(lambda: CloudSync(api_key=new_api_key(), base_url=scripted.url).adelete("/v1/files/f1")) is None
    )


# -- one pool per event loop -----------------------------------------------------------------


def test_500_sequential_async_calls_open_one_connection(fake: FakeCloudSync, client: CloudSync) -> None:
    async def many() -> int:
        for _ in range(500):
            await client.ame()
        return int(fake.counters["connections"])

    before = fake.counters["connections"]
    after = run(many)

    assert fake.counters["api_calls"] == 500
    assert after - before == 1


def test_the_pool_closes_when_its_loop_ends(fake: FakeCloudSync, client: CloudSync) -> None:
    async def call_and_keep_the_pool() -> Any:
        await client.ame()
        return await http.get_async_client()

    pooled = run(call_and_keep_the_pool)

    assert pooled.is_closed


def test_aclose_closes_the_pool_and_the_next_call_opens_another(
    fake: FakeCloudSync, client: CloudSync
) -> None:
    async def close_between() -> tuple[Any, Any, int]:
        await client.ame()
        first = await http.get_async_client()
        await http.aclose()
        await client.ame()
        return first, await http.get_async_client(), fake.counters["connections"]

    before = fake.counters["connections"]
    first, second, after = run(close_between)

    assert first.is_closed
    assert first is not second
    assert after - before == 2


def test_a_client_closed_behind_the_pools_back_is_replaced_and_both_close_with_the_loop(
    fake: FakeCloudSync, client: CloudSync
) -> None:
    async def close_it_directly() -> tuple[Any, Any]:
        await client.ame()
        first = await http.get_async_client()
        await first.aclose()  # not through http.aclose(): the pool still holds it
        await client.ame()
        return first, await http.get_async_client()

    first, second = run(close_it_directly)

    assert first is not second
    assert first.is_closed
    assert second.is_closed
    assert fake.counters["api_calls"] == 2


def test_aclose_without_a_pool_does_nothing(fake: FakeCloudSync, client: CloudSync) -> None:
    async def close_twice() -> Any:
        await http.aclose()  # this loop has made no call yet
        await client.ame()
        await http.aclose()
        await http.aclose()
        return await client.ame()

    assert run(close_twice)["id"] == "usr_ada"
    assert fake.counters["api_calls"] == 2


def test_after_a_fork_the_child_opens_pools_of_its_own(fake: FakeCloudSync, client: CloudSync) -> None:
    # What os.register_at_fork runs in a child, called here (forking a threaded test process is
    # deprecated): the parent's pool is forgotten, so the child's next call opens a connection.
    async def fork_between() -> tuple[Any, Any, int]:
        await client.ame()
        parents = await http.get_async_client()
        http._forget_async_pools()
        before = fake.counters["connections"]
        await client.ame()
        return parents, await http.get_async_client(), fake.counters["connections"] - before

    parents, children, opened = run(fork_between)

    assert children is not parents
    assert opened == 1
    assert parents.is_closed
    assert children.is_closed


def test_loops_in_two_threads_get_pools_of_their_own(fake: FakeCloudSync, client: CloudSync) -> None:
    async def pool() -> Any:
        await client.ame()
        return id(await http.get_async_client())

    pools: list[int] = []
    threads = [threading.Thread(target=lambda: pools.append(asyncio.run(pool()))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(pools) == 2
    assert fake.counters["api_calls"] == 2


def test_calls_gathered_at_once_each_get_a_connection_and_no_thread(
    fake: FakeCloudSync, client: CloudSync
) -> None:
    # More calls than the pool's old cap (32): with the fake holding every answer back, a cap
    # would show as fewer connections than calls (the rest queued for a free one).
    calls = 40
    # Long enough that every call is sent before the first answer comes back, even on a loaded
    # machine (at 0.2 s, a busy CI saw early answers free connections that later calls reused).
    fake.delay_always("me", 1.5)

    def threads() -> int:
        # The fake serves each connection on a thread of its own: those are not the client's.
        return sum(1 for thread in threading.enumerate() if "process_request_thread" not in thread.name)

    async def gathered() -> tuple[int, int, int]:
        await client.ame()  # the loop's pool and its first connection, before counting
        idle, before = threads(), fake.counters["connections"]
        peak = [idle]

        async def one() -> None:
            await client.ame()
            peak.append(threads())

        await asyncio.gather(*(one() for _ in range(calls)))
        return fake.counters["connections"] - before, idle, max(peak)

    opened, idle, peak = run(gathered)

    assert fake.counters["delayed_answers"] == calls + 1
    # The first call's connection is reused by one of them; each other call opens its own.
    assert opened == calls - 1
    assert peak == idle


@pytest.fixture
def tls_context_builds(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each build of the async transport's TLS context from now on: whether in an event loop."""
    in_a_loop: list[bool] = []
    create = ssl.create_default_context

    def recording(*args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            in_a_loop.append(False)
        else:
            in_a_loop.append(True)
        return create(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", recording)
    monkeypatch.setattr(http, "_ssl_context", None)  # as in a process that made no async call yet
    return in_a_loop


def test_a_new_loops_first_call_builds_no_tls_context_in_the_loop(
    fake: FakeCloudSync, client: CloudSync, tls_context_builds: list[bool]
) -> None:
    async def first_call() -> Any:
        return await client.ame()

    run(first_call)
    run(first_call)

    # Built once for the process (not once per loop: httpx2 alone would load the CA bundle for
    # every new client), and in a worker thread, where no event loop runs.
    assert tls_context_builds == [False]
    assert fake.counters["api_calls"] == 2


def test_a_new_loops_first_calls_at_once_share_one_tls_context_build(
    fake: FakeCloudSync, client: CloudSync, tls_context_builds: list[bool]
) -> None:
    """20 first calls at once, the first of them cancelled: one build, which the others await."""

    async def at_once() -> list[Any]:
        first = asyncio.ensure_future(client.ame())
        others = [asyncio.ensure_future(client.ame()) for _ in range(19)]
        await asyncio.sleep(0)  # every call is waiting on the build now
        first.cancel()
        answers = await asyncio.gather(*others)
        assert http._ssl_context_builds == {}  # nothing kept once built
        return answers

    answers = run(at_once)

    assert tls_context_builds == [False]  # one build, in a worker thread
    assert [me["id"] for me in answers] == [fake.current_user_id] * 19
    assert fake.counters["api_calls"] == 19


def test_a_tls_context_that_cannot_be_built_is_a_network_error_and_tried_again(
    fake: FakeCloudSync, client: CloudSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    create = ssl.create_default_context
    unreadable = [True]  # the CA bundle, until the test puts it back

    def building(*args: Any, **kwargs: Any) -> Any:
        if unreadable[0]:
            raise FileNotFoundError(2, "No such file or directory")
        return create(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", building)
    monkeypatch.setattr(http, "_ssl_context", None)

    async def twice() -> Any:
        with pytest.raises(errors.NetworkError, match="FileNotFoundError"):
            await client.ame()
        assert http._ssl_context_builds == {}  # the failed build is not kept
        unreadable[0] = False
        return await client.ame()

    me = run(twice)

    assert me["id"] == fake.current_user_id
    assert fake.counters["api_calls"] == 1


def test_two_first_calls_at_once_on_a_new_loop_share_one_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "_ssl_context", None)  # both wait on the TLS context's first build

    async def both() -> list[httpx2.AsyncClient]:
        clients = await asyncio.gather(http.get_async_client(), http.get_async_client())
        await http.aclose()
        return list(clients)

    first, second = run(both)

    assert first is second  # one pool for the loop, not one per caller that got there first
    assert first.is_closed


def test_the_pool_size_is_a_positive_integer(settings: Any, fake: FakeCloudSync, client: CloudSync) -> None:
    settings.CLOUDSYNC_ASYNC_MAX_CONNECTIONS = 0

    async def call() -> Any:
        return await client.ame()

    with pytest.raises(errors.ConfigurationError, match="CLOUDSYNC_ASYNC_MAX_CONNECTIONS"):
        run(call)
    settings.CLOUDSYNC_ASYNC_MAX_CONNECTIONS = 2
    assert run(call)["id"] == "usr_ada"


# -- the same rules as the sync calls --------------------------------------------------------


def test_aget_is_retried_with_backoff_without_blocking(
    fake: FakeCloudSync, tokens: dict[str, Any], asleeps: AsyncSleeps
) -> None:
    fake.fail_next("me", "server_error", times=2)
    api = CloudSync(access_token=tokens["access_token"], backoff=0.2, asleep=asleeps)

    assert run(api.ame)["id"] == fake.current_user_id

    assert fake.counters["api_calls"] == 3
    assert 0.2 <= asleeps[0] <= 0.22
    assert 0.4 <= asleeps[1] <= 0.44


def test_retry_after_is_honoured(fake: FakeCloudSync, client: CloudSync, asleeps: AsyncSleeps) -> None:
    fake.fail_next("me", "rate_limited", retry_after=3)

    assert run(client.ame)["id"] == fake.current_user_id
    assert asleeps == [3.0]


def test_apost_is_never_retried(fake: FakeCloudSync, client: CloudSync, asleeps: AsyncSleeps) -> None:
    fake.fail_next("api", "server_error")

    with pytest.raises(errors.ServerError):
        run(lambda: client.apost(dialect.WORKSPACES_PATH, json={"name": "x"}))

    assert asleeps == []
    assert fake.counters["api_calls"] == 1


def test_the_module_sleep_is_asyncio_sleep(
    monkeypatch: pytest.MonkeyPatch, fake: FakeCloudSync, tokens: dict[str, Any]
) -> None:
    from django_cloudsync import client as client_module

    assert client_module._asleep is asyncio.sleep
    waits = AsyncSleeps()
    monkeypatch.setattr(client_module, "_asleep", waits)
    fake.fail_next("me", "rate_limited", retry_after=1)

    run(CloudSync(access_token=tokens["access_token"]).ame)

    assert waits == [1.0]


def test_redirects_are_not_followed(scripted: ScriptedServer) -> None:
    scripted.answer(302, b"", {"Location": "https://elsewhere.example/v1/me"})

    with pytest.raises(errors.APIError) as caught:
        run(CloudSync(api_key=new_api_key(), base_url=scripted.url).ame)

    assert caught.value.status == 302
    assert len(scripted.requests) == 1


@pytest.mark.parametrize("base_url", ["http://api.cloudsync.example", "http://10.0.0.1:8000"])
def test_plain_http_refused_when_not_debug(settings: Any, scripted: ScriptedServer, base_url: str) -> None:
    settings.DEBUG = False

    with pytest.raises(errors.ConfigurationError, match="https"):
        run(CloudSync(api_key=new_api_key(), base_url=base_url).ame)


def test_an_unreachable_api_is_a_network_error(settings: Any, asleeps: AsyncSleeps) -> None:
    api = CloudSync(api_key=new_api_key(), base_url="http://127.0.0.1:9", asleep=asleeps, timeout=1)

    with pytest.raises(errors.NetworkError) as caught:
        run(api.ame)

    assert caught.value.__cause__ is None  # the library's frames hold the request headers
    assert len(asleeps) == 2  # CLOUDSYNC_MAX_RETRIES


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, errors.NotAuthenticated),
        (403, errors.InsufficientScope),
        (404, errors.APIError),
        (429, errors.RateLimited),
        (503, errors.ServerError),
    ],
)
def test_the_same_typed_errors(
    hostile_settings: FakeCloudSync, status: int, error: type[errors.CloudSyncError]
) -> None:
    fake = hostile_settings
    api = CloudSync(access_token=fake.issue_tokens()["access_token"])
    fake.respond_next("me", status, b'{"error": "nope"}', [("Content-Type", "application/json")])

    with pytest.raises(error) as caught:
        run(api.ame)

    assert type(caught.value) is error
    assert caught.value.status == status


def test_a_malformed_profile_is_invalid(fake: FakeCloudSync, client: CloudSync) -> None:
    fake.fail_next("me", "malformed_profile")
    with pytest.raises(errors.InvalidResponse):
        run(client.ame)


# -- a user's token: one refresh, one retry --------------------------------------------------


def test_a_401_refreshes_once_through_a_sync_source_off_the_loop(
    fake: FakeCloudSync, cloudsync_server: Any, tokens: dict[str, Any]
) -> None:
    source = ThreadRecordingSource(fake, cloudsync_server.url, tokens)
    old = source.access_token
    fake.expire_access_tokens()

    async def call() -> tuple[Any, int]:
        return await CloudSync(token_source=source).ame(), threading.get_ident()

    profile, loop_thread = run(call)

    assert profile["id"] == fake.current_user_id
    assert source.rejected == [old]
    assert fake.counters["refreshes"] == 1
    assert fake.counters["api_calls"] == 2
    # The sync source's blocking calls (HTTP, a database) never ran on the event loop's thread.
    assert len(source.threads) == 2
    assert loop_thread not in source.threads


def test_a_401_refreshes_once_through_an_async_source(
    fake: FakeCloudSync, cloudsync_server: Any, tokens: dict[str, Any]
) -> None:
    source = AsyncMemoryTokenSource(fake, cloudsync_server.url, tokens)
    assert isinstance(source, AsyncTokenSource)
    fake.expire_access_tokens()

    assert run(CloudSync(token_source=source).ame)["id"] == fake.current_user_id

    assert source.awaited == ["aget_access_token", "arefresh_after_rejection"]
    assert fake.counters["refreshes"] == 1
    assert fake.counters["api_calls"] == 2


def test_a_second_401_is_final(
    fake: FakeCloudSync, cloudsync_server: Any, tokens: dict[str, Any], scripted: ScriptedServer
) -> None:
    source = AsyncMemoryTokenSource(fake, cloudsync_server.url, tokens)
    scripted.answer(401, {"error": "invalid_token"})
    scripted.answer(401, {"error": "invalid_token"})

    with pytest.raises(errors.NotAuthenticated):
        run(CloudSync(token_source=source, base_url=scripted.url).ame)

    assert len(scripted.requests) == 2
    assert fake.counters["refreshes"] == 1
    # The retry carried the refreshed token.
    assert scripted.requests[1]["headers"]["Authorization"] == f"Bearer {source.access_token}"


def test_a_failing_refresh_is_raised_as_is(
    fake: FakeCloudSync, cloudsync_server: Any, tokens: dict[str, Any]
) -> None:
    source = AsyncMemoryTokenSource(fake, cloudsync_server.url, tokens)
    fake.expire_access_tokens()
    fake.fail_next("token", "server_error")

    with pytest.raises(errors.ServerError):
        run(CloudSync(token_source=source).ame)

    assert fake.counters["api_calls"] == 1


def test_a_dead_grant_asks_for_reauthorization(
    fake: FakeCloudSync, cloudsync_server: Any, tokens: dict[str, Any]
) -> None:
    source = MemoryTokenSource(fake, cloudsync_server.url, tokens)
    fake.revoke_tokens()

    with pytest.raises(errors.ReauthorizationRequired):
        run(CloudSync(token_source=source).ame)

    assert fake.counters["api_calls"] == 1


# -- no secret anywhere ----------------------------------------------------------------------


def test_no_secret_in_errors_reprs_or_logs(
    caplog: pytest.LogCaptureFixture, fake: FakeCloudSync, cloudsync_server: Any, tokens: dict[str, Any]
) -> None:
    from django.views.debug import ExceptionReporter

    caplog.set_level(logging.DEBUG, logger="django_cloudsync")
    source = AsyncMemoryTokenSource(fake, cloudsync_server.url, tokens)
    api = CloudSync(token_source=source, asleep=AsyncSleeps())
    fake.revoke_tokens()  # a 401, a refresh refused as invalid_grant
    secrets = [tokens["access_token"], tokens["refresh_token"], fake.client_secret]

    with pytest.raises(errors.ReauthorizationRequired) as caught:
        run(api.ame)
    report = ExceptionReporter(None, caught.type, caught.value, caught.tb).get_traceback_text()

    shown = [
        repr(api),
        str(caught.value),
        repr(caught.value),
        report,
        *(r.getMessage() for r in caplog.records),
    ]
    assert caplog.records
    for text in shown:
        for secret in secrets:
            assert secret not in text


def test_the_async_drivers_credential_does_not_show_its_token() -> None:
    # What an error report on Django 4.2 prints for the coroutine's local (see policy.Credential).
    credential = policy.Credential("at_test_secret")

    assert repr(credential) == "<Credential>"
    assert credential.value == "at_test_secret"


def test_a_network_error_report_shows_no_key(settings: Any) -> None:
    from django.views.debug import ExceptionReporter

    key = new_api_key()
    api = CloudSync(api_key=key, base_url="http://127.0.0.1:9", max_retries=0, timeout=1)

    with pytest.raises(errors.NetworkError) as caught:
        run(api.ame)
    report = ExceptionReporter(None, caught.type, caught.value, caught.tb).get_traceback_text()

    assert "Traceback" in report
    assert key not in report
    assert key not in repr(api)
