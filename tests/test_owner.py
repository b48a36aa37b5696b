"""The owner of stored tokens is whoever owns their SocialAccount now (issue 13, item 5)."""

from __future__ import annotations

from typing import Any

import pytest
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from django_cloudsync.models import CloudSyncToken
from django_cloudsync.sources import client_for, latest_token
from tests.helpers import signed_in

pytestmark = pytest.mark.django_db

User = get_user_model()


def move_account_to(account: SocialAccount, user: Any) -> None:
    """What allauth's SocialAccount admin does when a staff member picks another user."""
    account.user = user
    account.save()


def test_a_moved_account_takes_its_tokens_to_the_new_owner(client: Client, fake: Any) -> None:
    token = signed_in(client)
    ada = token.user
    grace = User.objects.create_user("grace", "grace@example.com", "pw")

    move_account_to(token.social_account, grace)

    assert client_for(ada) is None  # Ada no longer acts as that CloudSync account
    cloudsync = client_for(grace)
    assert cloudsync is not None
    assert cloudsync.me()["id"] == "usr_ada"
    assert CloudSyncToken.objects.get().user == grace


def test_the_admin_shows_and_filters_by_the_accounts_current_owner(
    client: Client, admin_client: Client, fake: Any
) -> None:
    token = signed_in(client)
    ada_pk = token.user.pk
    grace = User.objects.create_user("grace", "grace@example.com", "pw")
    move_account_to(token.social_account, grace)
    changelist = reverse("admin:django_cloudsync_cloudsynctoken_changelist")

    by_grace = admin_client.get(changelist, {"social_account__user__id__exact": str(grace.pk)})
    by_ada = admin_client.get(changelist, {"social_account__user__id__exact": str(ada_pk)})
    searched = admin_client.get(changelist, {"q": "grace"})

    assert by_grace.context["cl"].result_count == 1
    assert "grace" in by_grace.content.decode()
    assert searched.context["cl"].result_count == 1
    assert by_ada.context["cl"].result_count == 0


def test_client_for_finds_the_owner_in_one_query(
    client: Client, fake: Any, django_assert_num_queries: Any
) -> None:
    user = signed_in(client).user

    with django_assert_num_queries(1):
        token = latest_token(user)
        assert token is not None
        assert token.user == user  # fetched along: no query of its own
