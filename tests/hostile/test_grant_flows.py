"""Hostile input on the surfaces of issue 13, items 3 and 6: what an app claims about its access
token's scope, someone else's token presented to connect, and the app a stored grant names.

* A claimed scope never stores a scope the site's own sign-in would not ask for.
* A connect with another person's token answers 400 and leaves every stored row as it was.
* Whatever app a row names, and whatever apps the site has, a refresh succeeds or raises a
  :class:`~django_cloudsync.errors.CloudSyncError`; only ``invalid_grant`` deletes the row.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from allauth.socialaccount.models import SocialAccount, SocialApp
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client
from hypothesis import event, given
from hypothesis import strategies as st

from django_cloudsync import dialect, errors, tokens
from django_cloudsync.models import CloudSyncToken
from tests.helpers import expire, signed_in, stored_state
from tests.hostile.strategies import fewer_examples

pytestmark = pytest.mark.django_db

User = get_user_model()
TOKEN_URL = "/_allauth/app/v1/auth/provider/token"
SITE_SCOPES = {"workspaces:read", dialect.OFFLINE_ACCESS}  # the default SCOPE and offline_access

SCOPE_WORDS = st.sampled_from(
    [*sorted(dialect.KNOWN_SCOPES), "admin", "*", "workspaces:*", "WORKSPACES:READ"]
)
CLAIMED_SCOPES = st.one_of(
    st.lists(SCOPE_WORDS, max_size=8).map(" ".join),
    st.lists(SCOPE_WORDS, max_size=4).map("\t".join),
    st.text(max_size=64),
    st.none(),
)


def token_login(access_token: str, scope: Any, *, process: str = "login", session_token: str = "") -> Any:
    token = {"client_id": "fake-client-id", "access_token": access_token}
    if scope is not None:
        token["scope"] = scope
    headers: dict[str, Any] = {"HTTP_X_SESSION_TOKEN": session_token} if session_token else {}
    body = {"provider": "cloudsync", "process": process, "token": token}
    return Client().post(TOKEN_URL, json.dumps(body), content_type="application/json", **headers)


def forget_everyone() -> None:
    User.objects.all().delete()


@fewer_examples(10)
@given(claimed=CLAIMED_SCOPES)
def test_a_claimed_scope_never_stores_more_than_the_site_asks_for(
    hostile_settings: Any, claimed: Any
) -> None:
    fake = hostile_settings
    forget_everyone()
    issued = fake.issue_tokens(scope="workspaces:read")

    response = token_login(issued["access_token"], claimed)

    assert response.status_code in (200, 400), response.content
    event(f"status {response.status_code}")
    row = CloudSyncToken.objects.first()
    if response.status_code == 400:
        assert row is None
        return
    assert row is not None
    assert set(row.scopes) <= SITE_SCOPES
    assert set(row.scopes) <= set(dialect.split_scope(claimed))


@fewer_examples(10)
@given(claimed=CLAIMED_SCOPES, process=st.sampled_from(["login", "connect"]))
def test_another_persons_token_changes_no_stored_row(
    hostile_settings: Any, claimed: Any, process: str
) -> None:
    fake = hostile_settings
    if not CloudSyncToken.objects.exists():
        signed_in(Client())  # Ada's own grant, through the site
    User.objects.filter(username="grace").delete()
    cache.clear()  # allauth's login rate limit (kept in the cache) is not what a thousand examples test
    grace = User.objects.create_user("grace", "grace@example.com", "a-long-enough-password")
    login = Client().post(
        "/_allauth/app/v1/auth/login",
        json.dumps({"username": "grace", "password": "a-long-enough-password"}),
        content_type="application/json",
    )
    before = stored_state()
    issued = fake.issue_tokens(scope="workspaces:read")  # Ada's token, in Grace's app

    response = token_login(
        issued["access_token"],
        claimed,
        process="connect",
        session_token=login.json()["meta"]["session_token"],
    )

    assert response.status_code == 400, response.content
    assert stored_state() == before
    assert not SocialAccount.objects.filter(user=grace).exists()


CLIENT_IDS = st.one_of(
    st.sampled_from(["", "fake-client-id", "second-app", "hidden-app", "gone-app", "FAKE-CLIENT-ID"]),
    st.text(max_size=40),
)
APPS = st.lists(
    st.tuples(
        st.sampled_from(["second-app", "hidden-app", "fake-client-id"]),
        st.sampled_from(["fake-client-secret", "other-secret"]),
        st.booleans(),  # hidden
        st.booleans(),  # a SocialApp row rather than settings
    ),
    max_size=3,
)


def set_apps(settings: Any, apps: list[dict[str, Any]]) -> None:
    providers = settings.SOCIALACCOUNT_PROVIDERS
    settings.SOCIALACCOUNT_PROVIDERS = {**providers, "cloudsync": {**providers["cloudsync"], "APPS": apps}}


@fewer_examples(10)
@given(client_id=CLIENT_IDS, apps=APPS)
def test_whatever_app_a_grant_names_a_refresh_is_typed(
    hostile_settings: Any, settings: Any, client_id: str, apps: list[tuple[str, str, bool, bool]]
) -> None:
    fake = hostile_settings
    forget_everyone()
    SocialApp.objects.all().delete()
    site_app = {"client_id": fake.client_id, "secret": fake.client_secret}
    set_apps(settings, [site_app])  # the site's one app, whatever the last example left
    row = signed_in(Client())
    in_settings = [site_app]
    for app_id, secret, hidden, as_row in apps:
        app_settings = {"hidden": True} if hidden else {}
        if as_row:
            SocialApp.objects.create(
                provider="cloudsync", name=app_id, client_id=app_id, secret=secret, settings=app_settings
            )
        else:
            in_settings.append({"client_id": app_id, "secret": secret, "settings": app_settings})
    providers = settings.SOCIALACCOUNT_PROVIDERS
    settings.SOCIALACCOUNT_PROVIDERS = {
        **providers,
        "cloudsync": {**providers["cloudsync"], "APPS": in_settings},
    }
    CloudSyncToken.objects.filter(pk=row.pk).update(client_id=client_id)

    try:
        refreshed = tokens.refresh_if_expired(expire(row))
    except errors.ReauthorizationRequired:
        event("reauthorization required")
        assert not CloudSyncToken.objects.filter(pk=row.pk).exists()
    except errors.CloudSyncError as exc:
        event(type(exc).__name__)
        message = str(exc)
        assert CloudSyncToken.objects.get(pk=row.pk).version == row.version
        assert fake.client_secret not in message
    else:
        event("refreshed")
        assert refreshed.version == row.version + 1
        assert fake.last_token_request["client_id"] == fake.client_id
