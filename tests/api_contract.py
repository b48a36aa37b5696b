"""What every API backend glue promises (DRF and django-ninja alike), run by ``test_drf.py`` and
``test_ninja.py``: each imports these tests and gives them its ``api`` fixture (an :class:`API`).

The site is driven through Django's test client, CloudSync is the fake on a real loopback socket.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from django_cloudsync.models import CloudSyncToken
from django_cloudsync.testing.flow import app_authorization, sign_in
from tests.helpers import RequestHeaders, error_of

User = get_user_model()

APP_CODE_URL = "/accounts/cloudsync/app/code"
APP_REDIRECT_URI = "com.example.cloudsync:/oauth2redirect"
HEADLESS_REDIRECT_URL = "/_allauth/browser/v1/auth/provider/redirect"
MIDDLEWARE_PATH = "django_cloudsync.middleware.CloudSyncMiddleware"


@dataclass(frozen=True)
class API:
    """The test site's endpoints of one framework (``tests/api_urls.py``)."""

    workspaces: str
    needs_write: str
    untouched: str
    client: str
    #: What the framework answers a request nobody authenticated.
    anonymous_status: int
    #: The ``Content-Type`` of the framework's JSON answers.
    content_type: str = "application/json"

    def error_of(self, response: Any, status: int) -> dict[str, Any]:
        """:func:`tests.helpers.error_of`, with this framework's ``Content-Type``."""
        return error_of(response, status, self.content_type)


# Signing in.


def app_session_token(client: Client, fake: Any, *, process: str = "login", **headers: Any) -> str:
    """An app's code-with-PKCE sign-in (or connect); the session token allauth gives it."""
    authorized = app_authorization(APP_REDIRECT_URI).token(fake.client_id)
    response = client.post(
        APP_CODE_URL,
        json.dumps({"process": process, "token": authorized}),
        content_type="application/json",
        **headers,
    )
    assert response.status_code == 200, response.content
    token = response.json()["meta"].get("session_token") or headers.get("HTTP_X_SESSION_TOKEN")
    assert token
    return str(token)


def password_user_token(client: Client) -> str:
    """The session token of an app signed in with a password: a user without CloudSync."""
    User.objects.create_user("grace", "grace@example.com", "a-long-enough-password")
    response = client.post(
        "/_allauth/app/v1/auth/login",
        json.dumps({"username": "grace", "password": "a-long-enough-password"}),
        content_type="application/json",
    )
    return str(response.json()["meta"]["session_token"])


def session_signed_in(client: Client) -> Client:
    """A browser session signed in with CloudSync (the redirect flow)."""
    assert sign_in(client).status_code == 302
    return client


def app(token: str) -> RequestHeaders:
    return {"HTTP_X_SESSION_TOKEN": token}


# A user's client, whichever way the user was authenticated.


def test_a_browser_session_lists_the_workspaces(api: API, client: Client, fake: Any) -> None:
    session_signed_in(client)

    response = client.get(api.workspaces)

    assert response.status_code == 200, response.content
    assert response.json() == {"workspaces": ["Personal", "Team"]}


def test_an_app_session_token_lists_the_workspaces(api: API, client: Client, fake: Any) -> None:
    token = app_session_token(client, fake)

    response = Client().get(api.workspaces, **app(token))

    assert response.status_code == 200, response.content
    assert response.json() == {"workspaces": ["Personal", "Team"]}


def test_the_client_helper_works_without_a_permission(api: API, client: Client, fake: Any) -> None:
    token = app_session_token(client, fake)

    assert Client().get(api.client, **app(token)).json() == {"connected": True, "workspaces": 2}
    assert Client().get(api.client, **app(password_user_token(Client()))).json() == {"connected": False}


# What is missing, in JSON, never a redirect.


def test_a_user_without_cloudsync_is_told_to_connect_with_the_app_flow(api: API, fake: Any) -> None:
    token = password_user_token(Client())

    body = api.error_of(Client().get(api.workspaces, **app(token)), 403)

    assert body["errors"][0]["code"] == "cloudsync_not_connected"
    assert body["data"]["scopes"] == []
    code_flow = body["data"]["flows"][0]
    assert code_flow["id"] == "cloudsync_app_code"
    assert code_flow["process"] == "connect"
    assert code_flow["url"] == APP_CODE_URL
    assert code_flow["client_id"] == fake.client_id
    assert code_flow["scope"] == "workspaces:read offline_access"
    assert code_flow["authorize_url"].endswith("/oauth/authorize")
    assert [flow["id"] for flow in body["data"]["flows"]] == ["cloudsync_app_code", "provider_token"]


def test_a_missing_scope_names_it_and_the_browser_flow_asks_for_it(
    api: API, client: Client, fake: Any
) -> None:
    session_signed_in(client)

    body = api.error_of(client.get(api.needs_write), 403)

    assert body["errors"][0] == {
        "code": "cloudsync_scope_required",
        "message": "Your CloudSync grant lacks a scope this needs.",
        "param": "scope",
    }
    assert body["data"]["scopes"] == ["workspaces:write"]
    assert body["data"]["flows"] == [
        {
            "id": "provider_redirect",
            "provider": "cloudsync",
            "process": "connect",
            "method": "POST",
            "url": HEADLESS_REDIRECT_URL + "?scope=workspaces%3Awrite",
            "fields": {"provider": "cloudsync", "process": "connect"},
        }
    ]


def test_a_missing_scope_for_an_app_asks_for_everything_granted_and_the_new_scope(
    api: API, client: Client, fake: Any
) -> None:
    token = app_session_token(client, fake)

    body = api.error_of(Client().get(api.needs_write, **app(token)), 403)

    assert body["errors"][0]["code"] == "cloudsync_scope_required"
    assert body["data"]["flows"][0]["scope"] == "workspaces:read offline_access workspaces:write"


def test_a_dead_grant_answers_json_and_forgets_the_tokens(api: API, client: Client, fake: Any) -> None:
    token = app_session_token(client, fake)
    fake.revoke_tokens()
    fake.expire_access_tokens()

    response = Client().get(api.workspaces, **app(token))

    body = api.error_of(response, 403)
    assert body["errors"][0]["code"] == "cloudsync_reauthorization_required"
    assert body["data"]["scopes"] == ["workspaces:read", "offline_access"]
    assert body["data"]["flows"][0]["id"] == "cloudsync_app_code"
    assert not CloudSyncToken.objects.exists()
    # The next request knows the user is no longer connected.
    again = api.error_of(Client().get(api.workspaces, **app(token)), 403)
    assert again["errors"][0]["code"] == "cloudsync_not_connected"


# CloudSync's own failures.


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("rate_limited", 429, "cloudsync_rate_limited"),
        ("timeout", 504, "cloudsync_timeout"),
        ("server_error", 503, "cloudsync_server_error"),
        ("bad_gateway", 503, "cloudsync_server_error"),
        ("invalid_json", 503, "cloudsync_invalid_response"),
        ("html", 503, "cloudsync_invalid_response"),
    ],
)
def test_cloudsync_failures_answer_their_status_and_code(
    api: API, client: Client, fake: Any, settings: Any, kind: str, status: int, code: str
) -> None:
    settings.CLOUDSYNC_MAX_RETRIES = 0
    settings.CLOUDSYNC_TIMEOUT = (2.0, 0.3)
    fake.timeout_delay = 1.0
    token = app_session_token(client, fake)
    fake.fail_next("workspaces", kind, retry_after=120 if kind == "rate_limited" else None)

    response = Client().get(api.workspaces, **app(token))

    body = api.error_of(response, status)
    assert body["errors"][0]["code"] == code
    if kind == "rate_limited":
        assert response["Retry-After"] == "120"
        assert body["data"] == {"retry_after": 120}
    assert b"at_test_" not in response.content
    assert b"rt_test_" not in response.content


def test_cloudsync_refusing_a_scope_answers_403_with_a_connect_flow(
    api: API, client: Client, fake: Any
) -> None:
    session_signed_in(client)
    fake.respond_next(
        "workspaces",
        403,
        b'{"error": "insufficient_scope"}',
        [("Content-Type", "application/json"), ("WWW-Authenticate", 'Bearer scope="files:read"')],
    )

    body = api.error_of(client.get(api.workspaces), 403)

    assert body["errors"][0]["code"] == "cloudsync_insufficient_scope"
    assert body["data"]["flows"][0]["id"] == "provider_redirect"


# Bad credentials: a 4xx, never a redirect or a 500.


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_X_SESSION_TOKEN": ""},
        {"HTTP_X_SESSION_TOKEN": "not-a-session"},
        {"HTTP_X_SESSION_TOKEN": "x" * 5000},
        {"HTTP_AUTHORIZATION": "Bearer"},
        {"HTTP_AUTHORIZATION": "Token not-a-token"},
        {"HTTP_AUTHORIZATION": "Bearer a.b.c"},
    ],
    ids=["none", "empty", "unknown", "huge", "bare-bearer", "drf-token", "jwt-shaped"],
)
def test_missing_or_malformed_credentials_get_a_4xx(api: API, fake: Any, headers: RequestHeaders) -> None:
    response = Client().get(api.workspaces, **headers)

    assert 400 <= response.status_code < 500, response.content
    assert response["Content-Type"].startswith("application/json")


def test_the_session_token_of_a_deleted_user_gets_a_4xx(api: API, client: Client, fake: Any) -> None:
    token = app_session_token(client, fake)
    User.objects.all().delete()

    response = Client().get(api.workspaces, **app(token))

    assert response.status_code == api.anonymous_status, response.content
    assert response["Content-Type"].startswith("application/json")


# Queries.


def test_a_view_not_using_cloudsync_runs_no_extra_query_and_first_use_one(
    api: API, client: Client, fake: Any, settings: Any
) -> None:
    token = app_session_token(client, fake)

    def queries(url: str) -> int:
        api_client = Client()
        api_client.get(url, **app(token))  # warm caches (content types, the app)
        with CaptureQueriesContext(connection) as captured:
            assert api_client.get(url, **app(token)).status_code == 200
        return len(captured)

    with_app = queries(api.untouched)
    using_cloudsync = queries(api.client)
    settings.MIDDLEWARE = [entry for entry in settings.MIDDLEWARE if entry != MIDDLEWARE_PATH]
    without_app = queries(api.untouched)

    assert with_app == without_app
    assert using_cloudsync == with_app + 1
