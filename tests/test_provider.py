"""The provider's authorization request is its own, and allauth's ``SocialToken`` holds none of its tokens.

- A login URL's ``?auth_params=`` (and the ``AUTH_PARAMS`` setting) may add parameters to the
  authorization request, never replace ``client_id``, ``redirect_uri``, ``response_type``,
  ``state``, ``scope`` or the PKCE challenge (issue 13, item 9).
- With ``SOCIALACCOUNT_STORE_TOKENS`` on, the ``SocialToken`` allauth saves for a CloudSync
  account is empty, read from the raw database: the sealed sign-in blob, which the site's key
  opens and key rotation never re-seals, is nowhere but in transit (issue 13, item 10).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from allauth.socialaccount.models import SocialAccount, SocialToken
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test import Client
from django.urls import reverse

from django_cloudsync import checks, conf, oauth, tokens
from django_cloudsync.models import CloudSyncToken
from django_cloudsync.socialaccount.provider import PROTECTED_AUTH_PARAMS
from django_cloudsync.socialaccount.views import CloudSyncOAuth2Client
from django_cloudsync.sources import client_for
from django_cloudsync.testing.flow import app_authorization, consent, sign_in
from tests.test_headless import stored_anywhere

pytestmark = pytest.mark.django_db

User = get_user_model()

CALLBACK_URL = "http://testserver/accounts/cloudsync/login/callback/"
APP_REDIRECT_URI = "com.example.cloudsync:/oauth2redirect"
#: What an attacker's login link would put in ``auth_params``: every protected name, and one
#: harmless parameter that must still get through.
HOSTILE_AUTH_PARAMS = {
    "client_id": "attackers-client",
    "redirect_uri": "https://attacker.example/cb",
    "response_type": "token",
    "response_mode": "fragment",
    "state": "a-state-the-attacker-chose",
    "scope": "files:write users:write",
    "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    "code_challenge_method": "plain",
    "prompt": "consent",
}


def authorize_params(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 302, response.content[:300]
    return parse_qs(urlsplit(response["Location"]).query)


def login_with(client: Client, **query: str) -> Any:
    return client.post(f"{reverse('cloudsync_login')}?{urlencode({'process': 'login', **query})}")


def assert_the_request_is_ours(params: dict[str, list[str]], fake: Any, *, pkce: bool = True) -> None:
    assert params["client_id"] == [fake.client_id]
    assert params["redirect_uri"] == [CALLBACK_URL]
    assert params["response_type"] == ["code"]
    assert params["scope"] == ["workspaces:read offline_access"]
    assert params["state"] != [HOSTILE_AUTH_PARAMS["state"]]
    assert "response_mode" not in params
    if pkce:
        assert params["code_challenge_method"] == ["S256"]
        assert params["code_challenge"] != [HOSTILE_AUTH_PARAMS["code_challenge"]]
    else:
        assert "code_challenge" not in params
        assert "code_challenge_method" not in params


# The authorization request.


def test_the_protected_names_are_exactly_the_authorization_requests_own() -> None:
    assert set(HOSTILE_AUTH_PARAMS) - PROTECTED_AUTH_PARAMS == {"prompt"}


def test_a_login_urls_auth_params_cannot_override_the_authorization_request(
    client: Client, fake: Any
) -> None:
    response = login_with(client, auth_params=urlencode(HOSTILE_AUTH_PARAMS))

    params = authorize_params(response)
    assert_the_request_is_ours(params, fake)
    assert params["prompt"] == ["consent"]  # what is not protected still gets through
    # And the request is a working one: CloudSync's consent, the state and the PKCE check pass.
    signed_in = client.get(consent(response["Location"]))
    assert signed_in.status_code == 302
    assert "/login/" not in signed_in["Location"]
    assert CloudSyncToken.objects.get().scope == "workspaces:read offline_access"


@pytest.mark.parametrize("name", sorted(PROTECTED_AUTH_PARAMS))
def test_no_single_protected_parameter_can_be_overridden(client: Client, fake: Any, name: str) -> None:
    response = login_with(client, auth_params=urlencode({name: HOSTILE_AUTH_PARAMS[name]}))

    assert_the_request_is_ours(authorize_params(response), fake)


def test_without_pkce_a_login_url_cannot_add_a_challenge_of_its_own(
    client: Client, fake: Any, settings: Any
) -> None:
    settings.SOCIALACCOUNT_PROVIDERS["cloudsync"]["OAUTH_PKCE_ENABLED"] = False

    response = login_with(client, auth_params=urlencode(HOSTILE_AUTH_PARAMS))

    assert_the_request_is_ours(authorize_params(response), fake, pkce=False)


def test_the_auth_params_setting_cannot_override_the_authorization_request_either(
    client: Client, fake: Any, settings: Any
) -> None:
    settings.SOCIALACCOUNT_PROVIDERS["cloudsync"]["AUTH_PARAMS"] = HOSTILE_AUTH_PARAMS

    for response in (
        login_with(client),
        client.post(
            "/_allauth/browser/v1/auth/provider/redirect",
            {"provider": "cloudsync", "callback_url": "/spa/signed-in", "process": "login"},
        ),
    ):
        params = authorize_params(response)
        assert_the_request_is_ours(params, fake)
        assert params["prompt"] == ["consent"]


def test_a_login_urls_scope_still_only_adds_scopes(client: Client, fake: Any) -> None:
    params = authorize_params(login_with(client, scope="files:read"))

    assert params["scope"] == ["workspaces:read offline_access files:read"]


# allauth's SocialToken, with SOCIALACCOUNT_STORE_TOKENS on.


def sealed_values_outside_our_table() -> list[str]:
    """Where the raw database (and any decoded session) holds something sealed with the site's key."""
    ours = CloudSyncToken._meta.db_table
    return [place for place in stored_anywhere(f"v1${conf.cipher().primary_key_id}$") if place != ours]


def raw_social_tokens() -> list[tuple[str, str, Any]]:
    """``(token, token_secret, expires_at)`` of every SocialToken row, read with SQL."""
    table = connection.ops.quote_name(SocialToken._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT token, token_secret, expires_at FROM {table}")  # noqa: S608
        return list(cursor.fetchall())


def assert_allauth_keeps_an_empty_token_and_ours_works(user: Any, rows: int = 1) -> None:
    assert raw_social_tokens() == [("", "", None)] * rows
    assert sealed_values_outside_our_table() == []
    cloudsync = client_for(user)
    assert cloudsync is not None
    assert cloudsync.me()["id"] == "usr_ada"


@pytest.fixture
def store_tokens(settings: Any) -> None:
    settings.SOCIALACCOUNT_STORE_TOKENS = True


def test_a_new_users_sign_in_leaves_allauths_social_token_empty(
    client: Client, fake: Any, store_tokens: None
) -> None:
    assert sign_in(client).status_code == 302

    assert_allauth_keeps_an_empty_token_and_ours_works(User.objects.get())


def test_a_returning_users_sign_in_leaves_allauths_social_token_empty(
    client: Client, fake: Any, store_tokens: None
) -> None:
    assert sign_in(client).status_code == 302
    first = CloudSyncToken.objects.get()

    assert sign_in(Client()).status_code == 302

    assert CloudSyncToken.objects.get().version == first.version + 1
    assert_allauth_keeps_an_empty_token_and_ours_works(User.objects.get())


def test_a_sealed_blob_left_by_an_older_release_is_emptied_at_the_next_sign_in(
    client: Client, fake: Any, store_tokens: None
) -> None:
    assert sign_in(client).status_code == 302
    old_blob = tokens.seal_for_sociallogin(
        oauth.TokenResponse.from_json(fake.issue_tokens()), SocialAccount.objects.get().uid
    )
    SocialToken.objects.update(token=old_blob)
    assert sealed_values_outside_our_table() == ["socialaccount_socialtoken"]

    assert sign_in(Client()).status_code == 302

    assert_allauth_keeps_an_empty_token_and_ours_works(User.objects.get())


def test_a_connect_leaves_allauths_social_token_empty(client: Client, fake: Any, store_tokens: None) -> None:
    user = User.objects.create_user("grace", "grace@example.com", "a-long-enough-password")
    client.force_login(user)

    assert sign_in(client, process="connect").status_code == 302

    assert SocialAccount.objects.get().user == user
    assert_allauth_keeps_an_empty_token_and_ours_works(user)


def test_an_app_code_sign_in_leaves_allauths_social_token_empty(
    client: Client, fake: Any, store_tokens: None
) -> None:
    token = app_authorization(APP_REDIRECT_URI).token(fake.client_id)

    response = client.post(
        "/accounts/cloudsync/app/code",
        json.dumps({"process": "login", "token": token}),
        content_type="application/json",
    )

    assert response.status_code == 200, response.content
    assert_allauth_keeps_an_empty_token_and_ours_works(User.objects.get())


def test_an_app_token_sign_in_leaves_allauths_social_token_empty(
    client: Client, fake: Any, store_tokens: None
) -> None:
    issued = fake.issue_tokens()

    response = client.post(
        "/_allauth/app/v1/auth/provider/token",
        json.dumps(
            {
                "provider": "cloudsync",
                "process": "login",
                "token": {"client_id": fake.client_id, "access_token": issued["access_token"]},
            }
        ),
        content_type="application/json",
    )

    assert response.status_code == 200, response.content
    assert_allauth_keeps_an_empty_token_and_ours_works(User.objects.get())


def test_w002_says_what_allauth_really_keeps(settings: Any, fake: Any) -> None:
    settings.SOCIALACCOUNT_STORE_TOKENS = True

    (warning,) = checks.check_provider()

    assert warning.id == "django_cloudsync.W002"
    assert "empty SocialToken" in warning.msg
    assert "encrypted, in its own table only" in warning.msg
    assert "copy of every token" not in warning.msg


@pytest.mark.parametrize(
    ("extra_data", "shown"),
    [
        ({"name": "Ada Lovelace", "email": "ada@example.com"}, "Ada Lovelace"),
        ({"email": "ada@example.com"}, "ada@example.com"),
        ({}, "usr_ada"),
        (None, "usr_ada"),
    ],
)
def test_an_account_is_shown_by_its_name_else_its_email_else_its_id(extra_data: Any, shown: str) -> None:
    # allauth's "Account Connections" page lists each connected account by this.
    account = SocialAccount(provider=conf.PROVIDER_ID, uid="usr_ada", extra_data=extra_data)

    assert account.get_provider_account().to_str() == shown


def test_a_redirect_without_a_scope_outside_headless_asks_for_the_sites_scope(rf: Any, fake: Any) -> None:
    from allauth.socialaccount.adapter import get_adapter

    request = rf.get("/")
    request.user = AnonymousUser()
    request.session = SessionStore()
    provider = get_adapter().get_provider(request, conf.PROVIDER_ID)

    response = provider.redirect(request, "login")

    assert authorize_params(response)["scope"] == ["workspaces:read offline_access"]


def test_the_authorize_url_carries_a_state_only_when_allauth_set_one(rf: Any) -> None:
    # As allauth's own OAuth2Client: its flows always set one, and it is then always sent.
    oauth_client = CloudSyncOAuth2Client(
        rf.get("/"), "site-client", "unused", "POST", "https://auth.example/oauth/token", CALLBACK_URL
    )
    url = "https://auth.example/oauth/authorize"

    without = parse_qs(urlsplit(oauth_client.get_redirect_url(url, ["workspaces:read"], {})).query)
    oauth_client.state = "st-1"  # type: ignore[assignment]  # inferred from allauth's `self.state = None`
    with_state = parse_qs(urlsplit(oauth_client.get_redirect_url(url, ["workspaces:read"], {})).query)

    assert "state" not in without
    assert with_state["state"] == ["st-1"]
    assert with_state["client_id"] == without["client_id"] == ["site-client"]
