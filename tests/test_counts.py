"""The benchmarks' counts that no other test asserts, small enough for every CI run.

Connections reused across requests, the sign-in callback's queries against allauth's own way of
building a provider, and one token refresh for a burst of threads using the client. The times
are only reported, by ``python -m benchmarks``, never asserted.

This module doubles as the URLconf of its sign-in tests: the baseline provider of
``testsupport.baseline`` is not an installed app of the test site, so its URLs are added here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import urlencode

import pytest
from allauth.socialaccount.providers import registry
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import include, path, reverse

from django_cloudsync import http
from django_cloudsync.sources import client_for
from django_cloudsync.testing.flow import consent, sign_in
from tests.helpers import expire, signed_in
from testsupport.baseline import PROVIDER_ID as BASELINE_PROVIDER_ID
from testsupport.baseline import provider_settings as baseline_provider_settings
from testsupport.baseline.provider import BaselineProvider

urlpatterns = [
    path("accounts/", include("testsupport.baseline.urls")),
    path("", include("tests.urls")),
]

#: How many more queries than allauth's own providers a sign-in callback may run: two, the
#: benchmark's budget (benchmarks/bench_sign_in.py). They are the SAVEPOINT and RELEASE of
#: allauth's own atomic block, which nests in the transaction that makes the sign-in all or
#: nothing; storing the tokens costs what allauth's SocialToken costs (a new account's row is
#: one INSERT, a returning one's a SELECT and an UPDATE).
QUERY_BUDGET = 2


# One pooled connection, however many requests.


@pytest.mark.django_db
def test_api_calls_from_many_requests_on_one_thread_share_one_connection(client: Client, fake: Any) -> None:
    assert sign_in(client).status_code == 302
    http.reset_session()  # an empty pool: the one connection it opens is the one counted
    before = fake.counters

    for _ in range(20):
        assert client.get("/workspaces/").json()["connected"]

    after = fake.counters
    assert after["api_calls"] - before["api_calls"] == 20
    assert after["connections"] - before["connections"] == 1


# The sign-in callback's queries, against a provider built the way allauth builds its own.


@pytest.fixture
def baseline(settings: Any, fake: Any, cloudsync_server: Any) -> Iterator[str]:
    """The baseline provider, registered with allauth and pointed at the fake; its id."""
    registry.load()
    registry.register(BaselineProvider)
    settings.SOCIALACCOUNT_PROVIDERS = {
        **settings.SOCIALACCOUNT_PROVIDERS,
        BASELINE_PROVIDER_ID: baseline_provider_settings(
            cloudsync_server.url, fake.client_id, fake.client_secret
        ),
    }
    settings.ROOT_URLCONF = __name__
    try:
        yield BASELINE_PROVIDER_ID
    finally:
        registry.provider_map.pop(BASELINE_PROVIDER_ID, None)


def callback_queries(
    provider_id: str, alias: str, counting: Callable[[], AbstractContextManager[Any]] | None = None
) -> int:
    """Sign in with a fresh browser; the queries of the site's callback request alone.

    ``counting`` wraps the callback request (``CaptureQueriesContext`` if not given).
    """
    client = Client()
    login = client.post(f"{reverse(f'{provider_id}_login')}?{urlencode({'process': 'login'})}")
    assert login.status_code == 302
    callback_url = consent(login["Location"])
    with (counting or (lambda: CaptureQueriesContext(connections[alias])))() as queries:
        response = client.get(callback_url)
    assert response.status_code == 302
    assert "/login/" not in response["Location"]  # signed in, not sent back to a login page
    return len(queries)


def forget_everyone(django_user_model: Any) -> None:
    django_user_model.objects.all().delete()


@pytest.fixture
def allauth_style_queries(
    database: str, baseline: str, settings: Any, django_user_model: Any
) -> tuple[int, int]:
    """(new user, returning user) callback queries of the baseline, storing its tokens as allauth does."""
    settings.SOCIALACCOUNT_STORE_TOKENS = True
    new_user = callback_queries(baseline, database)
    returning_user = callback_queries(baseline, database)
    settings.SOCIALACCOUNT_STORE_TOKENS = False
    forget_everyone(django_user_model)
    return new_user, returning_user


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_a_new_users_sign_in_callback_stays_within_two_queries_of_allauths_own_providers(
    database: str,
    allauth_style_queries: tuple[int, int],
    django_assert_max_num_queries: Any,
) -> None:
    new_user, _ = allauth_style_queries

    callback_queries(
        "cloudsync",
        database,
        lambda: django_assert_max_num_queries(new_user + QUERY_BUDGET, connection=connections[database]),
    )


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_a_returning_users_sign_in_callback_stays_within_two_queries_of_allauths_own_providers(
    database: str,
    allauth_style_queries: tuple[int, int],
    django_assert_max_num_queries: Any,
) -> None:
    _, returning_user = allauth_style_queries
    callback_queries("cloudsync", database)  # the first sign-in creates the user

    callback_queries(
        "cloudsync",
        database,
        lambda: django_assert_max_num_queries(
            returning_user + QUERY_BUDGET, connection=connections[database]
        ),
    )


# One refresh for a burst of threads calling the API through the client.


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_threads_calling_the_api_with_one_expired_token_cause_one_token_request(
    database: str, client: Client, fake: Any
) -> None:
    token = expire(signed_in(client))
    user = token.user
    threads_count = 20
    start = threading.Barrier(threads_count)
    workspaces: list[int] = []
    failures: list[BaseException] = []
    before = fake.counters

    def call_the_api() -> None:
        try:
            cloudsync = client_for(user)  # loads the expired row, as a request would
            assert cloudsync is not None
            start.wait(timeout=10)
            workspaces.append(len(cloudsync.workspaces()))
        except BaseException as exc:
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=call_the_api) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    after = fake.counters
    assert failures == []
    assert len(workspaces) == threads_count
    assert after["token_requests"] - before["token_requests"] == 1
    assert after["invalid_grants"] - before["invalid_grants"] == 0
    assert after["api_calls"] - before["api_calls"] == threads_count
