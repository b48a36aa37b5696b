"""Async views: the middleware on an async chain, ``acloudsync()``/``aclient_for()``, the decorator on
``async def`` views, the testing kit with ``AsyncClient``, and the refresh from coroutines."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import types
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from asgiref.sync import async_to_sync, iscoroutinefunction
from django.core.handlers.asgi import ASGIHandler
from django.db import connection
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext
from django.urls import path, reverse

from django_cloudsync import aclient_for, arefresh, client_for, errors, signals
from django_cloudsync.middleware import CloudSyncMiddleware
from django_cloudsync.models import CloudSyncToken
from django_cloudsync.sources import StoredTokenSource
from django_cloudsync.testing.flow import afollow_consent, asign_in
from tests import async_views
from tests import markdown_samples as samples_module
from tests.async_urls import urlpatterns as async_urlpatterns
from tests.helpers import ADA, an_hour_later, expire, query_of, signed_in, stored_state

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.async_urls")]

T = TypeVar("T")


def run(work: Awaitable[T]) -> T:
    """Await ``work`` to its end in an event loop of its own, as an ASGI server would."""

    async def main() -> T:
        return await work

    return async_to_sync(main)()


def signed_in_async(browser: AsyncClient, **kwargs: Any) -> CloudSyncToken:
    """Sign in through the fake's consent page with Django's AsyncClient (the testing kit's asign_in)."""
    response = run(asign_in(browser, **kwargs))
    assert response.status_code == 302, response.status_code
    return CloudSyncToken.objects.get(account_id=kwargs.get("user_id") or ADA)


def get(browser: AsyncClient, path: str, **extra: Any) -> Any:
    return run(browser.get(path, **extra))


def with_a_dead_grant(fake: Any) -> AsyncClient:
    """A browser signed in whose access token has expired and whose grant CloudSync revoked."""
    browser = AsyncClient()
    token = signed_in_async(browser)
    fake.revoke_tokens()
    an_hour_later(token, fake)
    return browser


def queries_during(work: Callable[[], Any]) -> int:
    # Under async_to_sync from this thread, the async ORM's queries run on this thread's connection.
    with CaptureQueriesContext(connection) as captured:
        work()
    return len(captured)


# The middleware on an async chain.


def test_middleware_is_sync_and_async_capable_and_adds_no_thread_hop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert CloudSyncMiddleware.sync_capable
    assert CloudSyncMiddleware.async_capable

    async def get_response(request: Any) -> Any:
        return None

    assert iscoroutinefunction(CloudSyncMiddleware(get_response))
    assert not iscoroutinefunction(CloudSyncMiddleware(lambda request: None))
    with caplog.at_level(logging.DEBUG, logger="django.request"):
        ASGIHandler().load_middleware(is_async=True)
    adapted = [record.getMessage() for record in caplog.records if "adapted" in record.getMessage()]
    assert not [message for message in adapted if "CloudSyncMiddleware" in message], adapted


def test_async_view_that_does_not_use_cloudsync_costs_no_query(fake: Any) -> None:
    browser = AsyncClient()
    signed_in_async(browser)

    assert queries_during(lambda: get(browser, "/async/untouched/")) == 0


def test_acloudsync_is_one_query_cached_and_shared_with_cloudsync(fake: Any) -> None:
    browser = AsyncClient()
    signed_in_async(browser)

    with CaptureQueriesContext(connection) as captured:
        body = get(browser, "/async/state/").json()
    with CaptureQueriesContext(connection) as user_only:
        get(browser, "/async/auser/")

    assert body == {"connected": True, "scopes": ["workspaces:read", "offline_access"], "cached": True}
    token_queries = [query for query in captured if "django_cloudsync_cloudsynctoken" in query["sql"]]
    assert len(token_queries) == 1
    # /async/auser/ asks twice (acloudsync() and aclient_for()): one query each, nothing else more.
    assert len(user_only) == len(captured) + 1


def test_acloudsync_is_none_for_anonymous_and_unconnected_users(django_user_model: Any) -> None:
    browser = AsyncClient()
    assert get(browser, "/async/state/").json()["connected"] is False
    assert get(browser, "/async/auser/").json() == {
        "authenticated": False,
        "connected": False,
        "same_as_client_for": True,
    }

    browser.force_login(django_user_model.objects.create_user("grace"))

    assert get(browser, "/async/state/").json()["connected"] is False
    assert get(browser, "/async/auser/").json()["authenticated"] is True


def test_auser_returns_a_user_with_acloudsync_under_wsgi_too(client: Any, fake: Any) -> None:
    # An async view on a WSGI site: the middleware runs its sync path, and Django runs the view
    # in an event loop of its own; request.auser() still answers with the proxy.
    signed_in(client)

    assert client.get("/async/auser/").json() == {
        "authenticated": True,
        "connected": True,
        "same_as_client_for": True,
    }


def test_auser_returns_a_user_with_acloudsync(fake: Any) -> None:
    browser = AsyncClient()
    signed_in_async(browser)

    assert get(browser, "/async/auser/").json() == {
        "authenticated": True,
        "connected": True,
        "same_as_client_for": True,
    }


def test_aclient_for_gives_client_fors_answer_in_one_query(fake: Any, django_user_model: Any) -> None:
    browser = AsyncClient()
    token = signed_in_async(browser)
    user = django_user_model.objects.get()

    async def both() -> Any:
        return await aclient_for(user), await aclient_for(None)

    with CaptureQueriesContext(connection) as captured:
        client, nobody = run(both())

    assert len(captured) == 1
    assert nobody is None
    sync_client = client_for(user)
    assert client is not None
    assert sync_client is not None
    assert client.scopes == sync_client.scopes == token.scopes


def test_a_dead_grant_in_an_async_view_goes_through_consent_and_back(fake: Any) -> None:
    browser = with_a_dead_grant(fake)

    response = get(browser, "/async/workspaces/?page=2")

    assert response.status_code == 302
    assert urlsplit(response["Location"]).path == reverse("cloudsync_consent")
    assert query_of(response["Location"])["next"] == "/async/workspaces/?page=2"
    assert not CloudSyncToken.objects.exists()
    back = run(afollow_consent(browser, response["Location"]))
    assert back.status_code == 302
    assert back["Location"] == "/async/workspaces/?page=2"
    assert get(browser, back["Location"]).json()["connected"] is True


def test_a_dead_grant_in_an_async_view_is_json_for_an_api_client(fake: Any) -> None:
    browser = with_a_dead_grant(fake)

    response = get(browser, "/async/workspaces/", headers={"Accept": "application/json"})

    assert response.status_code == 403
    assert response.json()["errors"][0]["code"] == "cloudsync_reauthorization_required"


# @cloudsync_required on async views.


def test_decorated_async_view_stays_a_coroutine_function() -> None:
    assert iscoroutinefunction(async_views.connected_only)
    assert iscoroutinefunction(async_views.needs_write)
    assert async_views.connected_only.__name__ == "connected_only"


@pytest.mark.parametrize("with_middleware", [True, False], ids=["with the middleware", "without it"])
def test_decorated_async_view_sends_each_user_where_it_belongs(
    fake: Any, settings: Any, django_user_model: Any, with_middleware: bool
) -> None:
    if not with_middleware:
        settings.MIDDLEWARE = [path for path in settings.MIDDLEWARE if "CloudSyncMiddleware" not in path]
    browser = AsyncClient()

    anonymous = get(browser, "/async/connected-only/")
    assert anonymous.status_code == 302
    assert urlsplit(anonymous["Location"]).path == settings.LOGIN_URL

    browser.force_login(django_user_model.objects.create_user("grace"))
    not_connected = get(browser, "/async/connected-only/")
    assert not_connected.status_code == 302
    assert query_of(not_connected["Location"])["process"] == "connect"
    browser.logout()

    signed_in_async(browser)
    assert get(browser, "/async/connected-only/").json() == {"scopes": ["workspaces:read", "offline_access"]}

    lacking = get(browser, "/async/needs-write/")
    assert lacking.status_code == 302
    assert query_of(lacking["Location"])["scope"] == "workspaces:write"
    back = run(afollow_consent(browser, lacking["Location"]))
    assert back["Location"] == "/async/needs-write/"
    assert get(browser, "/async/needs-write/").status_code == 201


def test_decorated_async_view_answers_json_to_an_api_client(django_user_model: Any, fake: Any) -> None:
    browser = AsyncClient()
    json_only = {"Accept": "application/json"}

    anonymous = get(browser, "/async/connected-only/", headers=json_only)
    assert anonymous.json()["errors"][0]["code"] == "cloudsync_login_required"
    browser.force_login(django_user_model.objects.create_user("grace"))
    not_connected = get(browser, "/async/connected-only/", headers=json_only)
    assert not_connected.status_code == 403
    assert not_connected.json()["errors"][0]["code"] == "cloudsync_not_connected"


def test_decorated_async_view_turns_a_dead_grant_into_consent(fake: Any, settings: Any) -> None:
    settings.MIDDLEWARE = [path for path in settings.MIDDLEWARE if "CloudSyncMiddleware" not in path]
    browser = with_a_dead_grant(fake)

    response = get(browser, "/async/decorated-workspaces/")

    assert response.status_code == 302
    assert query_of(response["Location"])["next"] == "/async/decorated-workspaces/"
    assert not CloudSyncToken.objects.exists()


# The refresh from coroutines: once per expiry, no thread per waiter, the sync path's outcomes.


async def tokens_at_once(token: CloudSyncToken, coroutines: int, *, rejected: bool = False) -> list[Any]:
    """``coroutines`` coroutines of one event loop, each with its own copy of the row, ask for a
    token at once (or report a rejected one): their answers, or the errors they raised."""

    async def one() -> str:
        source = StoredTokenSource(await CloudSyncToken.objects.aget(pk=token.pk))
        if rejected:
            return await source.arefresh_after_rejection("rejected")
        return await source.aget_access_token()

    return await asyncio.gather(*(one() for _ in range(coroutines)), return_exceptions=True)


def gather_tokens(token: CloudSyncToken, coroutines: int, *, rejected: bool = False) -> list[Any]:
    return run(tokens_at_once(token, coroutines, rejected=rejected))


def sources_of(token: CloudSyncToken, count: int) -> list[StoredTokenSource]:
    """``count`` token sources, each on its own copy of the stored row (read now, not in the loop)."""
    return [StoredTokenSource(CloudSyncToken.objects.get(pk=token.pk)) for _ in range(count)]


def in_flight() -> dict[Any, Any]:
    """The running event loop's refreshes in flight (a copy)."""
    return dict(arefresh._IN_FLIGHT.get(asyncio.get_running_loop(), {}))


async def until(condition: Callable[[], bool]) -> None:
    """Let the event loop run until ``condition`` holds; a condition that never comes fails."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never came")


def test_many_coroutines_on_an_expired_token_refresh_once_without_a_thread_each(fake: Any) -> None:
    token = expire(signed_in_async(AsyncClient()))
    fake.delay_next("token", 0.3)  # the waiters pile up behind the one refresh
    peak: list[int] = []

    async def watched() -> list[Any]:
        idle = threading.active_count()
        done = asyncio.Event()

        async def sample() -> None:
            while not done.is_set():
                peak.append(threading.active_count() - idle)
                await asyncio.sleep(0.01)

        sampler = asyncio.ensure_future(sample())
        try:
            return await tokens_at_once(token, 50)
        finally:
            done.set()
            await sampler

    results = run(watched())

    assert [result for result in results if isinstance(result, BaseException)] == []
    assert len(set(results)) == 1
    assert fake.counters["refreshes"] == 1
    assert fake.counters["refresh_attempts"] == 1
    assert fake.counters["invalid_grants"] == 0
    assert CloudSyncToken.objects.get().version == token.version + 1
    assert max(peak) <= 3  # the refresh's worker thread, and asgiref's; never one per waiter


def test_many_coroutines_after_one_rejection_refresh_once(fake: Any) -> None:
    token = signed_in_async(AsyncClient())

    results = gather_tokens(token, 20, rejected=True)

    assert [result for result in results if isinstance(result, BaseException)] == []
    assert len(set(results)) == 1
    assert fake.counters["refreshes"] == 1
    assert CloudSyncToken.objects.get().version == token.version + 1


def test_invalid_grant_forgets_the_tokens_signals_once_and_raises_for_every_waiter(fake: Any) -> None:
    token = expire(signed_in_async(AsyncClient()))
    fake.revoke_tokens()
    sent: list[dict[str, Any]] = []
    signals.reauthorization_required.connect(
        lambda **kwargs: sent.append(kwargs), weak=False, dispatch_uid="test_async"
    )
    try:
        results = gather_tokens(token, 10)
    finally:
        signals.reauthorization_required.disconnect(dispatch_uid="test_async")

    assert all(isinstance(result, errors.ReauthorizationRequired) for result in results), results
    assert {tuple(result.scopes) for result in results} == {("workspaces:read", "offline_access")}
    assert not CloudSyncToken.objects.exists()
    assert fake.counters["refresh_attempts"] == 1
    assert [(kwargs["account_id"], kwargs["user"]) for kwargs in sent] == [(ADA, token.user)]
    # A coroutine still holding the row after that finds it gone: no token request, no signal.
    with pytest.raises(errors.ReauthorizationRequired) as late:
        run(StoredTokenSource(token).aget_access_token())
    assert late.value.scopes == ["workspaces:read", "offline_access"]
    assert fake.counters["refresh_attempts"] == 1
    assert len(sent) == 1


def test_a_lost_token_answer_keeps_the_stored_tokens(fake: Any, settings: Any) -> None:
    settings.CLOUDSYNC_TIMEOUT = 0.3
    fake.timeout_delay = 0.6
    token = expire(signed_in_async(AsyncClient()))
    fake.fail_next("token", "timeout")

    (result,) = gather_tokens(token, 1)

    assert isinstance(result, errors.Timeout)
    stored = CloudSyncToken.objects.get()
    assert (stored.access_token_ciphertext, stored.refresh_token_ciphertext, stored.version) == (
        token.access_token_ciphertext,
        token.refresh_token_ciphertext,
        token.version,
    )
    assert len(set(gather_tokens(stored, 5))) == 1  # and it works next time, once
    assert fake.counters["refreshes"] == 1


def test_a_cancelled_coroutine_leaves_the_shared_refresh_to_the_others(fake: Any) -> None:
    """The coroutine that started the refresh, and one that waits for it, are cancelled (their
    requests gone) while CloudSync answers: the others still get the new tokens, from one refresh."""
    token = expire(signed_in_async(AsyncClient()))
    fake.delay_next("token", 0.3)
    first, *others = sources_of(token, 11)

    async def cancel_two() -> tuple[list[Any], dict[Any, Any]]:
        leader = asyncio.ensure_future(first.aget_access_token())
        await until(lambda: fake.counters["refresh_attempts"] == 1)  # its refresh is under way
        waiters = [asyncio.ensure_future(source.aget_access_token()) for source in others]
        await asyncio.sleep(0)  # each waiter now awaits the refresh in flight
        assert len(in_flight()) == 1
        leader.cancel()
        waiters[0].cancel()
        return await asyncio.gather(leader, *waiters, return_exceptions=True), in_flight()

    results, left = run(cancel_two())

    fresh = CloudSyncToken.objects.get()
    assert [type(result) for result in results[:2]] == [asyncio.CancelledError] * 2
    assert results[2:] == [fresh.access_token()] * 9
    assert fresh.version == token.version + 1
    assert fake.counters["refresh_attempts"] == fake.counters["refreshes"] == 1
    assert left == {}


@pytest.mark.parametrize(
    ("fault", "error"), [("server_error", errors.ServerError), ("timeout", errors.Timeout)]
)
def test_a_fault_reaches_every_waiter_as_its_own_typed_error_and_keeps_the_stored_tokens(
    fake: Any, settings: Any, fault: str, error: type[errors.CloudSyncError]
) -> None:
    token = expire(signed_in_async(AsyncClient()))
    secrets = [token.access_token(), token.refresh_token()]
    before = stored_state()
    if fault == "timeout":
        settings.CLOUDSYNC_TIMEOUT = 0.3
        fake.timeout_delay = 0.6
    else:
        fake.delay_next("token", 0.2)  # the waiters pile up behind the one refresh
    fake.fail_next("token", fault)
    sources = sources_of(token, 10)

    async def at_once() -> tuple[list[Any], dict[Any, Any]]:
        results = await asyncio.gather(*(s.aget_access_token() for s in sources), return_exceptions=True)
        return results, in_flight()

    results, left = run(at_once())

    assert [type(result) for result in results] == [error] * 10, results
    assert len({id(result) for result in results}) == 10  # an instance each ...
    assert len({id(result.__cause__) for result in results}) == 1  # ... of the one refresh's error
    assert type(results[0].__cause__) is error
    said = [text for result in results for text in (str(result), repr(result), str(result.__cause__))]
    assert not [text for text in said for secret in secrets if secret and secret in text]
    assert fake.counters["refresh_attempts"] == 1  # one attempt shared, not one per waiter
    assert stored_state() == before
    assert left == {}
    assert len(set(gather_tokens(token, 5))) == 1  # and it works next time, once
    assert fake.counters["refreshes"] == 1


def test_a_fault_that_nobody_awaits_any_more_is_not_logged_as_never_retrieved(
    fake: Any, caplog: pytest.LogCaptureFixture
) -> None:
    token = expire(signed_in_async(AsyncClient()))
    before = stored_state()
    fake.delay_next("token", 0.3)
    fake.fail_next("token", "server_error")
    sources = sources_of(token, 3)

    async def give_up() -> list[type[Any]]:
        waiters = [asyncio.ensure_future(source.aget_access_token()) for source in sources]
        await until(lambda: fake.counters["refresh_attempts"] == 1)
        for waiter in waiters:
            waiter.cancel()
        # Only the types: a cancelled waiter's traceback would keep the refresh's task alive.
        outcomes = [type(outcome) for outcome in await asyncio.gather(*waiters, return_exceptions=True)]
        del waiters
        await until(lambda: not in_flight())  # the refresh failed, with nobody awaiting it
        gc.collect()  # asyncio logs an exception never retrieved when its task is collected
        return outcomes

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        outcomes = run(give_up())

    assert outcomes == [asyncio.CancelledError] * 3
    assert [record.getMessage() for record in caplog.records if record.name == "asyncio"] == []
    assert fake.counters["refresh_attempts"] == 1
    assert stored_state() == before


def test_a_loop_that_ends_mid_refresh_leaves_no_entry_and_the_refresh_still_lands(fake: Any) -> None:
    token = expire(signed_in_async(AsyncClient()))
    fake.delay_next("token", 0.3)
    (source,) = sources_of(token, 1)
    loops: list[asyncio.AbstractEventLoop] = []

    async def leave_early() -> asyncio.Future[str]:
        loops.append(asyncio.get_running_loop())
        asking = asyncio.ensure_future(source.aget_access_token())
        await until(lambda: fake.counters["refresh_attempts"] == 1)
        return asking  # and the loop ends: asyncio.run cancels what is left, the refresh's task too

    asking = run(leave_early())

    assert asking.cancelled()
    assert arefresh._IN_FLIGHT[loops[0]] == {}
    # The token request was sent: its worker thread still stored the new tokens.
    assert fake.counters["refreshes"] == 1
    assert CloudSyncToken.objects.get().version == token.version + 1


def test_coroutines_and_threads_together_refresh_once(fake: Any) -> None:
    from django.db import connections

    from django_cloudsync import tokens

    token = expire(signed_in_async(AsyncClient()))
    fake.delay_next("token", 0.2)
    from_threads: list[str] = []

    def in_a_thread() -> None:
        try:
            from_threads.append(
                tokens.refresh_if_expired(CloudSyncToken.objects.get(pk=token.pk)).access_token()
            )
        finally:
            connections.close_all()

    threads = [threading.Thread(target=in_a_thread) for _ in range(4)]
    for thread in threads:
        thread.start()
    from_coroutines = gather_tokens(token, 10)
    for thread in threads:
        thread.join(timeout=30)

    assert len(from_threads) == 4
    assert len(set(from_threads) | set(from_coroutines)) == 1
    assert fake.counters["refreshes"] == 1


# docs/async.md: every sample runs.

ASYNC_PAGE = samples_module.DOCS / "async.md"


def page_sample(index: int) -> dict[str, Any]:
    """The names a python sample of docs/async.md defines, once run."""
    python = [sample for sample in samples_module.samples(ASYNC_PAGE) if sample.language == "python"]
    assert len(python) == 3
    namespace: dict[str, Any] = {"__name__": f"docs_async_{index}"}
    exec(compile(python[index].body, f"docs/async.md sample {index}", "exec"), namespace)  # noqa: S102
    return namespace


def test_docs_view_sample_lists_the_workspaces(fake: Any, settings: Any) -> None:
    urls = types.ModuleType("docs_async_urls")
    urls.urlpatterns = [path("docs-async/", page_sample(0)["workspaces"]), *async_urlpatterns]  # type: ignore[attr-defined]
    sys.modules[urls.__name__] = urls
    settings.ROOT_URLCONF = urls.__name__
    browser = AsyncClient()
    try:
        assert get(browser, "/docs-async/").status_code == 302  # anonymous: sign in first
        signed_in_async(browser)
        body = get(browser, "/docs-async/").json()
    finally:
        del sys.modules[urls.__name__]

    assert body["workspaces"]
    assert fake.api_calls_by_path["/v1/workspaces"] == 1


def test_docs_aclient_for_sample_reads_the_scopes(fake: Any, django_user_model: Any) -> None:
    scopes_of = page_sample(1)["scopes_of"]
    signed_in_async(AsyncClient())

    assert run(scopes_of(django_user_model.objects.get())) == ["workspaces:read", "offline_access"]
    assert run(scopes_of(None)) == []


def test_docs_testing_sample_passes(cloudsync_settings: Any) -> None:
    page_sample(2)["test_async_sign_in"](cloudsync_settings, None)

    assert CloudSyncToken.objects.count() == 1


# The async client on stored tokens, over real HTTP: one token request, every call answered.


@pytest.mark.parametrize("noticed", ["on expiry", "on a 401"])
def test_many_coroutines_calling_the_api_with_one_expired_token_refresh_once(
    fake: Any, django_user_model: Any, noticed: str
) -> None:
    token = signed_in_async(AsyncClient())
    if noticed == "on expiry":
        an_hour_later(token, fake)
    else:
        fake.expire_access_tokens()  # the row still believes it: CloudSync's 401 tells
    user = django_user_model.objects.get()

    async def call() -> str:
        client = await aclient_for(user)
        assert client is not None
        me: dict[str, Any] = await client.ame()
        return str(me["id"])

    async def all_at_once() -> list[Any]:
        return await asyncio.gather(*(call() for _ in range(30)), return_exceptions=True)

    results = run(all_at_once())

    assert results == [ADA] * 30
    assert fake.counters["refresh_attempts"] == 1
    assert fake.counters["invalid_grants"] == 0
    assert CloudSyncToken.objects.get().version == token.version + 1
