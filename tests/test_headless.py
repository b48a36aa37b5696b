"""Sign in with CloudSync through allauth's headless API: an SPA's provider redirect and an app's token.

The site is driven through Django's test client, CloudSync is the fake on a real loopback socket.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from allauth.socialaccount.models import SocialAccount, SocialToken
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from django_cloudsync.models import CloudSyncToken
from django_cloudsync.sources import client_for
from django_cloudsync.testing.flow import app_authorization, consent
from tests.helpers import JSON_HEADERS, nothing_persisted, query_of, stored_state

pytestmark = pytest.mark.django_db

User = get_user_model()

REDIRECT_URL = "/_allauth/browser/v1/auth/provider/redirect"
BROWSER_SESSION_URL = "/_allauth/browser/v1/auth/session"
TOKEN_URL = "/_allauth/app/v1/auth/provider/token"
APP_SESSION_URL = "/_allauth/app/v1/auth/session"
SPA_CALLBACK = "/spa/signed-in"


# Helpers.


def spa_redirect(client: Client, *, process: str = "login", callback_url: str = SPA_CALLBACK) -> Any:
    """The SPA's form POST that starts the redirect flow (a real form post, not XHR)."""
    return client.post(
        REDIRECT_URL, {"provider": "cloudsync", "callback_url": callback_url, "process": process}
    )


def post_app_token(client: Client, body: Any) -> Any:
    return client.post(TOKEN_URL, json.dumps(body), content_type="application/json")


def app_token_body(token: dict[str, Any], *, process: str = "login") -> dict[str, Any]:
    return {"provider": "cloudsync", "process": process, "token": token}


def post_access_token(client: Client, fake: Any, access_token: str) -> Any:
    """An app signs in at allauth's provider/token endpoint with ``access_token``, as the site's
    own CloudSync app (``fake.client_id``)."""
    return post_app_token(client, app_token_body({"client_id": fake.client_id, "access_token": access_token}))


def errors_of(response: Any) -> list[dict[str, Any]]:
    """allauth headless's error format: HTTP 400, ``{"status": 400, "errors": [...]}``."""
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["status"] == 400
    found: list[dict[str, Any]] = body["errors"]
    return found


def app_signed_in_with_a_password(client: Client) -> tuple[Any, str]:
    """A new user Grace, and the session token of an app she signed in to with her password."""
    user = User.objects.create_user("grace", "grace@example.com", "a-long-enough-password")
    login = client.post(
        "/_allauth/app/v1/auth/login",
        json.dumps({"username": "grace", "password": "a-long-enough-password"}),
        content_type="application/json",
    )
    return user, login.json()["meta"]["session_token"]


def assert_signed_in_as_ada_with_a_session_token(response: Any) -> None:
    """allauth's authenticated answer to an app, for the fake's default user."""
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["meta"]["is_authenticated"] is True
    assert body["meta"]["session_token"]
    assert body["data"]["user"]["email"] == "ada@example.com"
    assert body["data"]["methods"][0]["provider"] == "cloudsync"


def assert_refused_before_cloudsync_is_asked(response: Any, fake: Any, error: tuple[str, str]) -> None:
    """A 400 with ``error`` (code, param) among allauth's errors; CloudSync never asked; nothing kept."""
    assert error in [(each["code"], each.get("param")) for each in errors_of(response)]
    assert fake.counters["api_calls"] == fake.counters["token_requests"] == 0
    assert nothing_persisted()


def stored_anywhere(secret: str) -> list[str]:
    """The tables (and decoded sessions) in which ``secret`` appears in plaintext."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - table names from introspection
            if any(secret in str(value) for row in cursor.fetchall() for value in row):
                found.append(table)
    for session in Session.objects.all():
        if secret in json.dumps(session.get_decoded(), default=str):
            found.append(f"session {session.pk}")
    return found


# The SPA's provider redirect (the "browser" client).


def test_spa_redirect_goes_to_cloudsync_with_state_and_pkce(
    client: Client, fake: Any, cloudsync_server: Any
) -> None:
    response = spa_redirect(client)

    assert response.status_code == 302
    params = query_of(response["Location"])
    assert response["Location"].startswith(f"{cloudsync_server.url}/oauth/authorize?")
    assert params["redirect_uri"] == "http://testserver/accounts/cloudsync/login/callback/"
    assert params["code_challenge_method"] == "S256"
    assert params["scope"] == "workspaces:read offline_access"
    assert params["state"]


def test_spa_sign_in_returns_to_the_spa_signed_in_with_tokens_stored_encrypted(
    client: Client, fake: Any
) -> None:
    callback = consent(spa_redirect(client)["Location"])

    response = client.get(callback)

    assert response.status_code == 302
    assert response["Location"] == SPA_CALLBACK
    session = client.get(BROWSER_SESSION_URL).json()
    assert session["meta"]["is_authenticated"] is True
    assert session["data"]["user"]["email"] == "ada@example.com"
    assert session["data"]["methods"][0]["provider"] == "cloudsync"
    token = CloudSyncToken.objects.get()
    assert token.account_id == "usr_ada"
    assert token.access_token().startswith("at_test_")
    refresh_token = token.refresh_token()
    assert refresh_token is not None
    assert refresh_token.startswith("rt_test_")
    assert not SocialToken.objects.exists()
    assert stored_anywhere(token.access_token()) == []
    assert stored_anywhere(refresh_token) == []


def test_spa_deny_returns_to_the_spa_with_the_error(client: Client, fake: Any) -> None:
    callback = consent(spa_redirect(client)["Location"], decision="deny")

    response = client.get(callback)

    assert response.status_code == 302
    back = urlsplit(response["Location"])
    assert back.path == SPA_CALLBACK
    assert parse_qs(back.query) == {"error": ["cancelled"], "error_process": ["login"]}
    assert client.get(BROWSER_SESSION_URL).status_code == 401
    assert nothing_persisted()


def test_spa_connect_links_cloudsync_to_the_signed_in_user(client: Client, fake: Any) -> None:
    user = User.objects.create_user("grace", "grace@example.com", "pw")
    client.force_login(user)
    callback = consent(spa_redirect(client, process="connect")["Location"])

    response = client.get(callback)

    assert response.status_code == 302
    assert response["Location"] == SPA_CALLBACK
    assert CloudSyncToken.objects.get().user == user


def test_spa_redirect_to_another_site_is_refused_before_cloudsync_is_asked(client: Client, fake: Any) -> None:
    response = spa_redirect(client, callback_url="https://evil.example/steal")

    assert response.status_code != 302 or "evil.example" not in response["Location"]
    assert fake.counters["authorize"] == 0
    assert nothing_persisted()


# The app's provider token (the "app" client).


def test_app_signs_in_with_its_access_token_and_gets_a_session_token(client: Client, fake: Any) -> None:
    issued = fake.issue_tokens(scope="workspaces:read offline_access")

    response = post_app_token(
        client,
        app_token_body(
            {"client_id": fake.client_id, "access_token": issued["access_token"], "scope": issued["scope"]}
        ),
    )

    assert_signed_in_as_ada_with_a_session_token(response)
    token = CloudSyncToken.objects.get()
    assert (token.account_id, token.user.email) == ("usr_ada", "ada@example.com")
    assert token.access_token() == issued["access_token"]
    assert token.scopes == ["workspaces:read", "offline_access"]
    assert token.environment == "test"


def test_app_session_token_authenticates_the_apps_next_requests(client: Client, fake: Any) -> None:
    issued = fake.issue_tokens()
    body = post_access_token(client, fake, issued["access_token"]).json()

    response = Client().get(APP_SESSION_URL, HTTP_X_SESSION_TOKEN=body["meta"]["session_token"])

    assert response.status_code == 200
    assert response.json()["data"]["user"]["email"] == "ada@example.com"


def test_app_connects_cloudsync_to_the_user_signed_in_with_a_password(client: Client, fake: Any) -> None:
    user, session_token = app_signed_in_with_a_password(client)
    issued = fake.issue_tokens()

    response = client.post(
        TOKEN_URL,
        json.dumps(
            app_token_body(
                {"client_id": fake.client_id, "access_token": issued["access_token"]}, process="connect"
            )
        ),
        content_type="application/json",
        HTTP_X_SESSION_TOKEN=session_token,
    )

    assert response.status_code == 200, response.content
    token = CloudSyncToken.objects.get()
    assert (token.user, token.account_id) == (user, "usr_ada")
    assert SocialAccount.objects.get().user == user


def test_connecting_with_another_persons_access_token_changes_none_of_their_tokens(
    client: Client, fake: Any
) -> None:
    # Issue 13, item 3: Ada's stored grant, then Grace's app presents Ada's access token.
    post_app_code(client, app_code_body(authorized_app(fake)))
    before = stored_state()
    _, session_token = app_signed_in_with_a_password(Client())
    issued = fake.issue_tokens(scope="workspaces:read")

    response = Client().post(
        TOKEN_URL,
        json.dumps(
            app_token_body(
                {
                    "client_id": fake.client_id,
                    "access_token": issued["access_token"],
                    "scope": "workspaces:read workspaces:write files:write",
                },
                process="connect",
            )
        ),
        content_type="application/json",
        HTTP_X_SESSION_TOKEN=session_token,
    )

    assert [error["code"] for error in errors_of(response)] == ["connected_other"]
    assert stored_state() == before


def test_an_apps_claimed_scope_is_kept_only_within_the_sites_own(client: Client, fake: Any) -> None:
    issued = fake.issue_tokens(scope="workspaces:read")  # what CloudSync granted the app

    response = post_app_token(
        client,
        app_token_body(
            {
                "client_id": fake.client_id,
                "access_token": issued["access_token"],
                "scope": "workspaces:read workspaces:write files:write",  # what the app claims
            }
        ),
    )

    assert_signed_in_as_ada_with_a_session_token(response)
    # The site asks for workspaces:read (and offline_access); the rest of the claim is dropped.
    assert CloudSyncToken.objects.get().scopes == ["workspaces:read"]


def test_an_app_reconnecting_with_a_code_stores_the_new_grant(client: Client, fake: Any) -> None:
    body = post_app_code(client, app_code_body(authorized_app(fake))).json()
    before = CloudSyncToken.objects.get()

    response = post_app_code(
        Client(),
        app_code_body(
            authorized_app(fake, scope="workspaces:read files:read offline_access"), process="connect"
        ),
        HTTP_X_SESSION_TOKEN=body["meta"]["session_token"],
    )

    assert response.status_code == 200, response.content
    after = CloudSyncToken.objects.get()
    assert after.version == before.version + 1
    assert "files:read" in after.scopes


def test_app_token_is_checked_with_one_call_to_v1_me_and_no_token_request(client: Client, fake: Any) -> None:
    issued = fake.issue_tokens()
    before = fake.counters

    post_access_token(client, fake, issued["access_token"])

    after = fake.counters
    assert after["api_calls_by_path"] == {"/v1/me": 1}
    assert after["token_requests"] == before["token_requests"] == 0


def test_app_refresh_token_is_never_taken(client: Client, fake: Any) -> None:
    issued = fake.issue_tokens()

    post_app_token(
        client,
        app_token_body(
            {
                "client_id": fake.client_id,
                "access_token": issued["access_token"],
                "refresh_token": issued["refresh_token"],
            }
        ),
    )

    token = CloudSyncToken.objects.get()
    assert token.refresh_token() is None
    assert token.scope == ""  # the app named no scope: unknown, the API stays the judge


def test_app_token_tokens_are_stored_only_encrypted(client: Client, fake: Any) -> None:
    issued = fake.issue_tokens()

    post_access_token(client, fake, issued["access_token"])

    assert CloudSyncToken.objects.get().access_token() == issued["access_token"]
    assert not SocialToken.objects.exists()
    assert stored_anywhere(issued["access_token"]) == []
    assert stored_anywhere(issued["refresh_token"]) == []


def test_app_token_of_a_returning_user_signs_in_the_same_user(client: Client, fake: Any) -> None:
    first = fake.issue_tokens()
    post_access_token(Client(), fake, first["access_token"])
    second = fake.issue_tokens()

    response = post_access_token(client, fake, second["access_token"])

    assert response.status_code == 200
    assert User.objects.count() == 1
    token = CloudSyncToken.objects.get()
    assert token.access_token() == second["access_token"]
    assert token.version == 2


def test_app_token_signs_in_the_account_the_token_belongs_to(client: Client, fake: Any) -> None:
    fake.add_user("usr_grace", "grace@example.com", "Grace Hopper")
    issued = fake.issue_tokens(user_id="usr_grace")

    response = post_access_token(client, fake, issued["access_token"])

    assert response.json()["data"]["user"]["email"] == "grace@example.com"
    assert CloudSyncToken.objects.get().account_id == "usr_grace"


def test_site_calls_cloudsync_with_the_apps_token(client: Client, fake: Any) -> None:
    issued = fake.issue_tokens(scope="workspaces:read")
    post_access_token(client, fake, issued["access_token"])

    cloudsync = client_for(User.objects.get())
    assert cloudsync is not None
    workspaces = cloudsync.workspaces()

    assert [workspace["name"] for workspace in workspaces] == ["Personal", "Team"]


# The app's token refused: HTTP 400 in allauth's format, nothing stored.


@pytest.mark.parametrize("ended_by", ["expire_access_tokens", "revoke_tokens"], ids=["expired", "revoked"])
def test_an_ended_token_is_refused(client: Client, fake: Any, ended_by: str) -> None:
    issued = fake.issue_tokens()
    getattr(fake, ended_by)()

    response = post_access_token(client, fake, issued["access_token"])

    assert [error["code"] for error in errors_of(response)] == ["invalid_token"]
    assert nothing_persisted()


@pytest.mark.parametrize(
    ("access_token", "message", "api_calls"),
    [
        pytest.param(
            "at_test_forged-by-someone",
            "CloudSync did not accept the token: it is unknown, expired or revoked.",
            {"/v1/me": 1},  # CloudSync is asked, and says no
            id="forged",
        ),
        pytest.param(
            "at_live_a-real-users-token",
            "This is a live CloudSync token; this site uses CloudSync's sandbox environment.",
            {},  # a live token is never sent anywhere by a sandbox site
            id="live-token-on-a-sandbox-site",
        ),
    ],
)
def test_a_token_cloudsync_would_not_take_is_refused_with_why(
    client: Client, fake: Any, access_token: str, message: str, api_calls: dict[str, int]
) -> None:
    response = post_access_token(client, fake, access_token)

    assert errors_of(response) == [{"message": message, "code": "invalid_token", "param": "token"}]
    assert fake.counters["api_calls_by_path"] == api_calls
    assert nothing_persisted()


def test_sandbox_token_is_refused_by_a_live_site(client: Client, fake: Any, settings: Any) -> None:
    settings.SOCIALACCOUNT_PROVIDERS["cloudsync"]["ENVIRONMENT"] = "live"
    issued = fake.issue_tokens()

    response = post_access_token(client, fake, issued["access_token"])

    assert [error["message"] for error in errors_of(response)] == [
        "This is a sandbox CloudSync token; this site uses CloudSync's live environment."
    ]
    assert fake.counters["api_calls"] == 0
    assert nothing_persisted()


def test_token_for_another_client_id_is_refused(client: Client, fake: Any) -> None:
    issued = fake.issue_tokens()

    response = post_app_token(
        client, app_token_body({"client_id": "someone-elses-app", "access_token": issued["access_token"]})
    )

    assert [(error["code"], error["param"]) for error in errors_of(response)] == [("invalid_token", "token")]
    assert fake.counters["api_calls"] == 0
    assert nothing_persisted()


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        pytest.param({"process": "login", "token": {}}, "required", "provider", id="no-provider"),
        pytest.param({"provider": "cloudsync", "token": {}}, "required", "process", id="no-process"),
        pytest.param({"provider": "cloudsync", "process": "login"}, "required", "token", id="no-token"),
        pytest.param(
            {"provider": "cloudsync", "process": "login", "token": "at_test_x"},
            "invalid_token",
            "token",
            id="token-not-an-object",
        ),
        pytest.param(
            {"provider": "cloudsync", "process": "login", "token": {"access_token": "at_test_x"}},
            "client_id_required",
            "token",
            id="no-client-id",
        ),
        pytest.param(
            {"provider": "cloudsync", "process": "login", "token": {"client_id": "fake-client-id"}},
            "token_required",
            "token",
            id="no-access-token",
        ),
        pytest.param(
            {"provider": "cloudsync", "process": "elevate", "token": {"client_id": "fake-client-id"}},
            "invalid_choice",
            "process",
            id="unknown-process",
        ),
    ],
)
def test_missing_or_malformed_fields_are_refused(
    client: Client, fake: Any, body: dict[str, Any], code: str, param: str
) -> None:
    response = post_app_token(client, body)

    assert_refused_before_cloudsync_is_asked(response, fake, (code, param))


@pytest.mark.parametrize(
    "token",
    [
        pytest.param({"id_token": "eyJhbGciOiJub25lIn0.e30."}, id="id-token-only"),
        pytest.param({"access_token": "at_test_has a space"}, id="space"),
        pytest.param({"access_token": "at_test_x\r\nX-Injected: 1"}, id="header-injection"),
        pytest.param({"access_token": "at_test_" + "a" * 5000}, id="too-long"),
        pytest.param({"access_token": "at_test_x", "scope": ["workspaces:read"]}, id="scope-not-a-string"),
    ],
)
def test_malformed_tokens_are_refused_without_calling_cloudsync(
    client: Client, fake: Any, token: dict[str, Any]
) -> None:
    response = post_app_token(client, app_token_body({"client_id": fake.client_id, **token}))

    assert [(error["code"], error["param"]) for error in errors_of(response)] == [("invalid_token", "token")]
    assert fake.counters["api_calls"] == 0
    assert nothing_persisted()


@pytest.mark.parametrize(
    "fault",
    [
        "server_error",
        "bad_gateway",
        "invalid_json",
        "rate_limited",
        pytest.param("malformed_profile", id="a-profile-without-an-account-id"),
    ],
)
def test_cloudsync_trouble_is_a_400_the_app_can_retry_never_a_500(
    client: Client, fake: Any, settings: Any, fault: str
) -> None:
    settings.CLOUDSYNC_MAX_RETRIES = 0
    issued = fake.issue_tokens()
    fake.fail_next("me", fault)

    response = post_access_token(client, fake, issued["access_token"])

    assert [error["code"] for error in errors_of(response)] == ["cloudsync_unavailable"]
    assert nothing_persisted()


@pytest.mark.parametrize(
    ("status", "profile", "expected"),
    [
        pytest.param(200, {"id": "usr_" + "x" * 300}, "cloudsync_unavailable", id="an id too long to store"),
        pytest.param(403, {"error": "insufficient_scope"}, "invalid_token", id="a token kept from it"),
    ],
)
def test_a_profile_answer_that_names_no_storable_account_is_refused(
    client: Client, fake: Any, status: int, profile: dict[str, str], expected: str
) -> None:
    issued = fake.issue_tokens()
    fake.respond_next("me", status, json.dumps(profile).encode(), JSON_HEADERS)

    response = post_access_token(client, fake, issued["access_token"])

    assert [error["code"] for error in errors_of(response)] == [expected]
    assert fake.counters["api_calls"] == 1
    assert nothing_persisted()


def test_token_authentication_can_be_turned_off(client: Client, fake: Any, settings: Any) -> None:
    settings.SOCIALACCOUNT_PROVIDERS["cloudsync"]["TOKEN_AUTHENTICATION"] = False
    issued = fake.issue_tokens()

    response = post_access_token(client, fake, issued["access_token"])

    assert [error["code"] for error in errors_of(response)] == ["token_authentication_not_supported"]
    assert fake.counters["api_calls"] == 0
    assert nothing_persisted()


def test_config_lists_cloudsync_for_both_flows(client: Client, fake: Any) -> None:
    flows = {
        flow["id"]: flow
        for flow in client.get("/_allauth/app/v1/config").json()["data"]["socialaccount"]["providers"]
    }

    assert flows["cloudsync"]["flows"] == ["provider_redirect", "provider_token"]


# The app's authorization code with PKCE (the "app" client, at our endpoint beside allauth's).

APP_CODE_URL = "/accounts/cloudsync/app/code"
APP_REDIRECT_URI = "com.example.cloudsync:/oauth2redirect"


def post_app_code(client: Client, body: Any, **headers: Any) -> Any:
    return client.post(APP_CODE_URL, json.dumps(body), content_type="application/json", **headers)


def app_code_body(token: dict[str, Any], *, process: str = "login") -> dict[str, Any]:
    return {"process": process, "token": token}


def authorized_app(fake: Any, **kwargs: Any) -> dict[str, str]:
    """The ``token`` object of an app that just got a code from CloudSync's consent page."""
    return app_authorization(APP_REDIRECT_URI, **kwargs).token(fake.client_id)


def test_app_signs_in_with_a_code_and_gets_a_session_token(client: Client, fake: Any) -> None:
    response = post_app_code(client, app_code_body(authorized_app(fake)))

    assert_signed_in_as_ada_with_a_session_token(response)
    session_token = response.json()["meta"]["session_token"]
    assert Client().get(APP_SESSION_URL, HTTP_X_SESSION_TOKEN=session_token).status_code == 200


def test_app_code_is_exchanged_in_cloudsyncs_dialect_with_the_apps_verifier_and_redirect_uri(
    client: Client, fake: Any
) -> None:
    authorized = authorized_app(fake)

    post_app_code(client, app_code_body(authorized))

    assert fake.last_token_request == {
        "grant_type": "authorization_code",
        "client_id": fake.client_id,
        "client_secret": "***",
        "code": authorized["code"],
        "redirect_uri": APP_REDIRECT_URI,
        "code_verifier": authorized["code_verifier"],
    }
    assert fake.counters["code_exchanges"] == 1
    assert fake.counters["api_calls_by_path"] == {"/v1/me": 1}


def test_app_code_gives_the_site_its_own_grant_with_a_refresh_token(client: Client, fake: Any) -> None:
    post_app_code(client, app_code_body(authorized_app(fake, scope="workspaces:read offline_access")))
    token = CloudSyncToken.objects.get()
    assert token.refresh_token() is not None
    assert token.scopes == ["workspaces:read", "offline_access"]
    fake.expire_access_tokens()

    cloudsync = client_for(token.user)
    assert cloudsync is not None
    workspaces = cloudsync.workspaces()

    assert [workspace["name"] for workspace in workspaces] == ["Personal", "Team"]
    assert fake.counters["refreshes"] == 1


def test_app_code_tokens_are_stored_only_encrypted(client: Client, fake: Any) -> None:
    post_app_code(client, app_code_body(authorized_app(fake)))
    token = CloudSyncToken.objects.get()
    refresh_token = token.refresh_token()

    assert refresh_token is not None
    assert not SocialToken.objects.exists()
    assert stored_anywhere(token.access_token()) == []
    assert stored_anywhere(refresh_token) == []


def test_app_code_of_a_returning_user_signs_in_the_same_user(client: Client, fake: Any) -> None:
    post_app_code(client, app_code_body(authorized_app(fake)))
    first = CloudSyncToken.objects.get()

    response = post_app_code(Client(), app_code_body(authorized_app(fake)))

    assert response.status_code == 200, response.content
    assert User.objects.count() == 1
    second = CloudSyncToken.objects.get()
    assert second.user == first.user
    assert second.access_token() != first.access_token()


def test_app_code_connects_cloudsync_to_the_user_signed_in_with_a_password(client: Client, fake: Any) -> None:
    user, session_token = app_signed_in_with_a_password(client)

    response = post_app_code(
        client, app_code_body(authorized_app(fake), process="connect"), HTTP_X_SESSION_TOKEN=session_token
    )

    assert response.status_code == 200, response.content
    token = CloudSyncToken.objects.get()
    assert (token.user, token.account_id) == (user, "usr_ada")


def test_app_code_connect_without_a_signed_in_user_is_refused_before_the_code_is_spent(
    client: Client, fake: Any
) -> None:
    response = post_app_code(client, app_code_body(authorized_app(fake), process="connect"))

    assert_refused_before_cloudsync_is_asked(response, fake, ("not_authenticated", "process"))


def test_app_code_signs_in_the_account_that_consented(client: Client, fake: Any) -> None:
    fake.add_user("usr_grace", email="grace@example.com", name="Grace Hopper")

    post_app_code(client, app_code_body(authorized_app(fake, user_id="usr_grace")))

    assert CloudSyncToken.objects.get().account_id == "usr_grace"
    assert User.objects.get().email == "grace@example.com"


def test_app_code_works_with_token_authentication_turned_off(
    client: Client, fake: Any, settings: Any
) -> None:
    # TOKEN_AUTHENTICATION governs allauth's access-token endpoint only: a site can take codes
    # (its own grant) and refuse other apps' access tokens.
    settings.SOCIALACCOUNT_PROVIDERS["cloudsync"]["TOKEN_AUTHENTICATION"] = False

    response = post_app_code(client, app_code_body(authorized_app(fake)))

    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    ("change", "code"),
    [
        pytest.param({"client_id": None}, "client_id_required", id="no-client-id"),
        pytest.param({"client_id": "another-client"}, "invalid_token", id="another-client-id"),
        pytest.param({"code": None}, "invalid_token", id="no-code"),
        pytest.param({"code": "a code with spaces"}, "invalid_token", id="malformed-code"),
        pytest.param({"code": ["list"]}, "invalid_token", id="code-not-a-string"),
        pytest.param({"code_verifier": None}, "invalid_token", id="no-verifier"),
        pytest.param({"code_verifier": "too-short"}, "invalid_token", id="short-verifier"),
        pytest.param({"code_verifier": "v" * 42 + "\n"}, "invalid_token", id="verifier-with-newline"),
        pytest.param({"redirect_uri": None}, "invalid_token", id="no-redirect-uri"),
        pytest.param(
            {"redirect_uri": "https://attacker.example/cb"}, "invalid_token", id="unlisted-redirect-uri"
        ),
        pytest.param({"redirect_uri": APP_REDIRECT_URI + "/"}, "invalid_token", id="not-byte-identical"),
    ],
)
def test_app_code_requests_that_are_wrong_are_refused_before_cloudsync_is_asked(
    client: Client, fake: Any, change: dict[str, Any], code: str
) -> None:
    token = {**authorized_app(fake), **change}
    token = {name: value for name, value in token.items() if value is not None}
    before = fake.counters["token_requests"]

    response = post_app_code(client, app_code_body(token))

    assert [(error["code"], error["param"]) for error in errors_of(response)] == [(code, "token")]
    assert fake.counters["token_requests"] == before
    assert nothing_persisted()


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        pytest.param({"process": "login"}, "required", "token", id="no-token"),
        pytest.param({"process": "login", "token": "a-code"}, "invalid_token", "token", id="not-an-object"),
        pytest.param({"token": {}}, "required", "process", id="no-process"),
        pytest.param({"process": "elevate", "token": {}}, "invalid_choice", "process", id="unknown-process"),
    ],
)
def test_app_code_requests_of_the_wrong_shape_are_refused(
    client: Client, fake: Any, body: dict[str, Any], code: str, param: str
) -> None:
    assert_refused_before_cloudsync_is_asked(post_app_code(client, body), fake, (code, param))


@pytest.mark.parametrize("body", [b"[]", b"1", b'"a-code"', b"null", b"{", b"\xff"])
def test_app_code_request_that_is_not_a_json_object_is_a_400(client: Client, fake: Any, body: bytes) -> None:
    response = client.generic("POST", APP_CODE_URL, body, content_type="application/json")

    assert response.status_code == 400
    assert fake.counters["token_requests"] == 0


def test_code_a_user_approved_for_someone_elses_redirect_uri_is_refused(client: Client, fake: Any) -> None:
    # The attack APP_REDIRECT_URIS stops: an authorization request for this site's client, with
    # the attacker's redirect URI and verifier, approved by a user who trusts the site's name.
    stolen = app_authorization("https://attacker.example/cb").token(fake.client_id)
    before = fake.counters["token_requests"]

    response = post_app_code(client, app_code_body(stolen))

    assert [error["code"] for error in errors_of(response)] == ["invalid_token"]
    assert fake.counters["token_requests"] == before
    assert nothing_persisted()


def test_app_code_is_refused_by_a_site_that_lists_no_app_redirect_uris(
    client: Client, fake: Any, settings: Any
) -> None:
    authorized = authorized_app(fake)
    settings.SOCIALACCOUNT_PROVIDERS["cloudsync"]["APP_REDIRECT_URIS"] = []

    response = post_app_code(client, app_code_body(authorized))

    assert [error["code"] for error in errors_of(response)] == ["token_authentication_not_supported"]
    assert fake.counters["token_requests"] == 0
    assert nothing_persisted()


def test_app_code_with_another_verifier_is_refused_by_cloudsync(client: Client, fake: Any) -> None:
    # An attacker who intercepted the code does not hold the app's verifier.
    token = {**authorized_app(fake), "code_verifier": "x" * 64}

    response = post_app_code(client, app_code_body(token))

    [error] = errors_of(response)
    assert (error["code"], error["param"]) == ("invalid_token", "token")
    assert "invalid_grant" in error["message"]
    assert fake.counters["invalid_grants"] == 1
    assert nothing_persisted()


def test_app_code_issued_for_another_listed_redirect_uri_is_refused_by_cloudsync(
    client: Client, fake: Any
) -> None:
    token = {**authorized_app(fake), "redirect_uri": "https://app.example.com/oauth/cloudsync"}

    response = post_app_code(client, app_code_body(token))

    assert [error["code"] for error in errors_of(response)] == ["invalid_token"]
    assert fake.counters["invalid_grants"] == 1
    assert nothing_persisted()


def test_app_code_used_twice_signs_in_once(client: Client, fake: Any) -> None:
    authorized = authorized_app(fake)
    assert post_app_code(client, app_code_body(authorized)).status_code == 200

    replay = post_app_code(Client(), app_code_body(authorized))

    assert [error["code"] for error in errors_of(replay)] == ["invalid_token"]
    assert fake.counters["code_exchanges"] == 1


def test_expired_app_code_is_refused(client: Client, fake: Any) -> None:
    fake.code_lifetime = 0
    authorized = authorized_app(fake)

    response = post_app_code(client, app_code_body(authorized))

    assert [error["code"] for error in errors_of(response)] == ["invalid_token"]
    assert nothing_persisted()


@pytest.mark.parametrize(
    ("endpoint", "fault"),
    [
        ("token", "server_error"),
        ("token", "invalid_json"),
        ("token", "html"),
        ("me", "server_error"),
        ("me", "malformed_profile"),
    ],
)
def test_cloudsync_trouble_during_an_app_code_sign_in_is_a_400_never_a_500(
    client: Client, fake: Any, settings: Any, endpoint: str, fault: str
) -> None:
    settings.CLOUDSYNC_MAX_RETRIES = 0
    authorized = authorized_app(fake)
    fake.fail_next(endpoint, fault)

    response = post_app_code(client, app_code_body(authorized))

    assert [error["code"] for error in errors_of(response)] == ["cloudsync_unavailable"]
    assert nothing_persisted()


def test_cloudsync_refusing_the_sites_credentials_is_logged_for_its_operator(
    client: Client, fake: Any, caplog: pytest.LogCaptureFixture
) -> None:
    authorized = authorized_app(fake)
    fake.respond_next("token", 401, json.dumps({"error": "invalid_client"}).encode(), JSON_HEADERS)

    with caplog.at_level("ERROR", logger="django_cloudsync"):
        response = post_app_code(client, app_code_body(authorized))

    assert [error["code"] for error in errors_of(response)] == ["invalid_token"]
    assert [record.getMessage() for record in caplog.records if record.levelname == "ERROR"] == [
        "CloudSync refused this site's client credentials (invalid_client)"
    ]
    assert fake.client_secret not in caplog.text
    assert nothing_persisted()


def test_app_code_and_verifier_stay_out_of_answers_and_logs(
    client: Client, fake: Any, caplog: pytest.LogCaptureFixture
) -> None:
    authorized = authorized_app(fake)
    wrong = {**authorized, "code_verifier": "w" * 64}
    fake.fail_next("token", "invalid_grant")

    with caplog.at_level("DEBUG"):
        answers = [
            post_app_code(client, app_code_body(token)).content.decode() for token in (wrong, authorized)
        ]

    for secret in (
        authorized["code"],
        authorized["code_verifier"],
        wrong["code_verifier"],
        fake.client_secret,
    ):
        assert all(secret not in answer for answer in answers)
        assert secret not in caplog.text


def test_app_code_endpoint_takes_only_post(client: Client, fake: Any) -> None:
    assert client.get(APP_CODE_URL).status_code == 405


@pytest.mark.parametrize("way", ["code", "access_token"])
def test_an_app_sign_in_that_needs_a_signup_form_keeps_only_a_sealed_token_until_it_is_done(
    client: Client, fake: Any, settings: Any, way: str
) -> None:
    settings.SOCIALACCOUNT_AUTO_SIGNUP = False
    if way == "code":
        response = post_app_code(client, app_code_body(authorized_app(fake)))
    else:
        issued = fake.issue_tokens()
        response = post_access_token(client, fake, issued["access_token"])

    assert response.status_code == 401, response.content
    pending = response.json()
    assert [flow["id"] for flow in pending["data"]["flows"] if flow.get("is_pending")] == ["provider_signup"]
    session_token = pending["meta"]["session_token"]
    assert not CloudSyncToken.objects.exists()
    assert fake.counters["code_exchanges"] == (1 if way == "code" else 0)
    assert stored_anywhere("at_test_") == []  # the pending sign-in holds the tokens sealed only

    signed_up = client.post(
        "/_allauth/app/v1/auth/provider/signup",
        json.dumps({"email": "ada.lovelace@example.com", "username": "ada"}),
        content_type="application/json",
        HTTP_X_SESSION_TOKEN=session_token,
    )

    assert signed_up.status_code == 200, signed_up.content
    token = CloudSyncToken.objects.get()
    assert token.user.email == "ada.lovelace@example.com"
    assert (token.refresh_token() is not None) == (way == "code")
    cloudsync = client_for(token.user)
    assert cloudsync is not None
    assert cloudsync.me()["id"] == "usr_ada"


@pytest.mark.parametrize("returning", [False, True], ids=["new-user", "returning-user"])
def test_an_app_code_sign_in_runs_no_more_queries_than_an_access_token_sign_in(
    fake: Any, returning: bool
) -> None:
    post_app_code(Client(), app_code_body(authorized_app(fake)))  # the returning user; warm caches

    def queries(url: str, body: dict[str, Any]) -> int:
        if not returning:
            User.objects.all().delete()
        with CaptureQueriesContext(connection) as captured:
            response = Client().post(url, json.dumps(body), content_type="application/json")
        assert response.status_code == 200, response.content
        return len(captured)

    code = app_code_body(authorized_app(fake))
    access_token = app_token_body(
        {"client_id": fake.client_id, "access_token": fake.issue_tokens()["access_token"]}
    )

    # Both run in the all-or-nothing sign-in transaction (allauth's endpoint through
    # CloudSyncMiddleware): the same statements, SAVEPOINT and RELEASE included.
    assert queries(APP_CODE_URL, code) == queries(TOKEN_URL, access_token)
