"""``client_for(user)``: a user's CloudSync client outside a request."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.test import Client

from django_cloudsync import client_for, tokens
from django_cloudsync.client import CloudSync
from django_cloudsync.middleware import UserWithCloudSync
from django_cloudsync.models import CloudSyncToken
from tests.helpers import an_hour_later, expire, signed_in

pytestmark = pytest.mark.django_db

User = get_user_model()


def test_none_for_no_user_or_an_anonymous_one(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0):
        assert client_for(None) is None
        assert client_for(AnonymousUser()) is None


def test_none_for_a_user_who_has_not_connected_cloudsync(django_user_model: Any) -> None:
    assert client_for(django_user_model.objects.create_user("grace")) is None


def test_none_for_a_user_not_saved_yet(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0):
        assert client_for(User(username="unsaved")) is None


def test_a_connected_users_client_costs_one_query_and_no_http_call(
    client: Client, fake: Any, django_assert_num_queries: Any
) -> None:
    token = signed_in(client)
    user = User.objects.get()
    calls_before = fake.counters

    with django_assert_num_queries(1):
        cloudsync = client_for(user)

    assert isinstance(cloudsync, CloudSync)
    assert cloudsync.scopes == token.scopes == ["workspaces:read", "offline_access"]
    assert cloudsync.environment == "test"
    assert fake.counters["api_calls"] == calls_before["api_calls"]
    assert fake.counters["token_requests"] == calls_before["token_requests"]


def test_the_client_works_outside_a_request(client: Client, fake: Any) -> None:
    signed_in(client)
    user = User.objects.get()
    client.logout()

    cloudsync = client_for(user)

    assert cloudsync is not None
    assert cloudsync.me()["id"] == "usr_ada"
    assert cloudsync.workspaces()


def test_an_expired_token_is_refreshed_once_outside_a_request(client: Client, fake: Any) -> None:
    an_hour_later(signed_in(client), fake)
    cloudsync = client_for(User.objects.get())
    assert cloudsync is not None

    cloudsync.workspaces()
    cloudsync.workspaces()

    assert fake.counters["refreshes"] == 1
    assert fake.api_calls_by_path["/v1/workspaces"] == 2


def test_it_is_the_same_client_as_request_user_cloudsync(client: Client, fake: Any) -> None:
    signed_in(client)
    user = User.objects.get()
    proxy = UserWithCloudSync.wrapping(user)

    outside, inside = client_for(user), proxy.cloudsync

    assert outside is not None
    assert inside is not None
    assert outside.scopes == inside.scopes
    assert outside.me() == inside.me()
    assert client_for(proxy) is not None  # request.user itself is accepted too


def test_of_several_accounts_the_most_recently_updated_one_is_used(client: Client, fake: Any) -> None:
    ada = signed_in(client)
    fake.add_user("usr_bob", "bob@example.com", "Bob Builder")
    signed_in(client, process="connect", user_id="usr_bob")
    user = User.objects.get()
    assert CloudSyncToken.objects.filter(social_account__user=user).count() == 2

    bob = client_for(user)
    assert bob is not None
    assert bob.me()["id"] == "usr_bob"  # connected last

    tokens.refresh_if_expired(expire(ada))  # saving the row updates it

    refreshed_last = client_for(user)
    assert refreshed_last is not None
    assert refreshed_last.me()["id"] == "usr_ada"


def test_another_users_account_is_never_used(client: Client, fake: Any, django_user_model: Any) -> None:
    signed_in(client)
    grace = django_user_model.objects.create_user("grace")

    assert client_for(grace) is None
