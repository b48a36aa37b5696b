"""The fake CloudSync, specified by its behaviour over real HTTP.

Every test talks to a real loopback server with ``requests``, as the app does. None needs Django.
"""

from __future__ import annotations

import base64
import hashlib
import io
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from html.parser import HTMLParser
from http import HTTPStatus
from http.client import HTTPConnection, HTTPResponse
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from wsgiref.util import setup_testing_defaults

import pytest
import requests

from django_cloudsync import dialect
from django_cloudsync.testing import FakeCloudSync, FakeCloudSyncServer, FakeUser, mount
from django_cloudsync.testing import __main__ as standalone
from django_cloudsync.testing.fake import (
    DRIP_CHUNK_BYTES,
    GZIP_BOMB_BYTES,
    MAX_BODY_BYTES,
    MAX_DELAY,
    Environ,
    StartResponse,
)

REDIRECT_URI = "http://app.test/accounts/cloudsync/login/callback/"
CLIENT_ID = "fake-client-id"
CLIENT_SECRET = "fake-client-secret"
FAST = 0.2  # seconds: the client timeout of tests that provoke a slow answer


# --------------------------------------------------------------------------- helpers


class ConsentPage(HTMLParser):
    """What a browser would see of the consent page: the form, its fields, users and buttons."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.title = ""
        self.action = ""
        self.method = ""
        self.hidden: dict[str, str] = {}
        self.users: list[str] = []
        self.selected_user: str | None = None
        self.buttons: list[tuple[str, str, str]] = []
        self._in: str | None = None
        self._button: tuple[str, str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "title":
            self._in = "title"
        elif tag == "form":
            self.action, self.method = attributes["action"], attributes["method"]
        elif tag == "input" and attributes.get("type") == "hidden":
            self.hidden[attributes["name"]] = attributes["value"]
        elif tag == "option":
            self.users.append(attributes["value"])
            if "selected" in attributes:
                self.selected_user = attributes["value"]
        elif tag == "button":
            self._button = (attributes["name"], attributes["value"])

    def handle_data(self, data: str) -> None:
        if self._in == "title":
            self.title += data
        elif self._button is not None:
            self.buttons.append((*self._button, data.strip()))
            self._button = None

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in = None


def authorize_params(**overrides: str | None) -> dict[str, str]:
    """A valid authorization request; ``None`` removes a parameter."""
    params: dict[str, str | None] = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "workspaces:read offline_access",
        "state": "st-123",
        **overrides,
    }
    return {name: value for name, value in params.items() if value is not None}


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def callback_params(response: requests.Response) -> dict[str, str]:
    """The query parameters of a redirect back to the client."""
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI)
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def consent(http: requests.Session, url: str, **overrides: str | None) -> ConsentPage:
    response = http.get(url + dialect.AUTHORIZE_PATH, params=authorize_params(**overrides))
    assert response.status_code == 200, response.text
    return ConsentPage(response.text)


def decide(
    http: requests.Session,
    url: str,
    decision: str = "allow",
    user: str | None = None,
    **overrides: str | None,
) -> dict[str, str]:
    """Open the consent page, submit it as a browser would, and return the callback parameters."""
    page = consent(http, url, **overrides)
    form = {**page.hidden, "decision": decision, "user": user or page.selected_user or ""}
    response = http.post(url + page.action, data=form, allow_redirects=False)
    return callback_params(response)


def token_request(http: requests.Session, url: str, **fields: Any) -> requests.Response:
    body = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **fields}
    return http.post(url + dialect.TOKEN_PATH, json=body)


def exchange(http: requests.Session, url: str, code: str, **fields: Any) -> requests.Response:
    body = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, **fields}
    return token_request(http, url, **body)


def refresh(http: requests.Session, url: str, refresh_token: str) -> requests.Response:
    return token_request(http, url, grant_type="refresh_token", refresh_token=refresh_token)


def sign_in(
    http: requests.Session, url: str, scope: str = "workspaces:read offline_access"
) -> dict[str, Any]:
    """The whole browser flow; returns the token response."""
    code = decide(http, url, scope=scope)["code"]
    response = exchange(http, url, code)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def call(
    http: requests.Session, url: str, path: str, token: str | None, method: str = "GET", **kwargs: Any
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.request(method, url + path, headers=headers, **kwargs)


def assert_oauth_error(response: requests.Response, status: int, error: str) -> None:
    """RFC 6749 §5.2: the status, a JSON body with ``error`` and ``error_description``, no caching."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["error"] == error
    assert body["error_description"]


def assert_invalid_token(response: requests.Response) -> None:
    assert response.status_code == 401
    assert response.json() == {"error": dialect.INVALID_TOKEN}
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def url(cloudsync_server: FakeCloudSyncServer, cloudsync_fake: FakeCloudSync) -> str:
    """The base URL of a clean fake (``cloudsync_fake`` is reset for each test)."""
    return cloudsync_server.url


# --------------------------------------------------------------------------- consent page


def test_consent_page_lists_the_scopes_the_users_and_two_buttons(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    cloudsync_fake.add_user("usr_grace", "grace@example.com", "Grace Hopper")
    response = http.get(
        url + dialect.AUTHORIZE_PATH, params=authorize_params(scope="files:read offline_access")
    )

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    page = ConsentPage(response.text)
    assert page.title == "CloudSync — Authorize"
    assert "read file contents" in response.text
    assert "refresh tokens" in response.text
    assert page.users == ["usr_ada", "usr_grace"]
    assert page.selected_user == "usr_ada"
    assert page.buttons == [("decision", "allow", "Allow"), ("decision", "deny", "Deny")]
    assert (page.method, page.action) == ("post", dialect.AUTHORIZE_PATH)
    assert page.hidden == {**authorize_params(scope="files:read offline_access")}
    assert cloudsync_fake.counters["authorize"] == 1
    assert cloudsync_fake.last_authorize_params == authorize_params(scope="files:read offline_access")


def test_consent_page_preselects_the_current_user(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    cloudsync_fake.add_user("usr_grace", None, "Grace Hopper")
    cloudsync_fake.current_user_id = "usr_grace"

    assert consent(http, url).selected_user == "usr_grace"


def test_consent_page_escapes_everything_it_shows(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    cloudsync_fake.add_user('usr_"><script>', "<b>@example.com", "<script>alert(1)</script>")
    state = '"><script>alert("state")</script>'

    response = http.get(url + dialect.AUTHORIZE_PATH, params=authorize_params(state=state))

    assert "<script>" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    assert ConsentPage(response.text).hidden["state"] == state  # escaped, yet carried intact


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"client_id": "someone-else"}, id="unknown client_id"),
        pytest.param({"client_id": None}, id="missing client_id"),
        pytest.param({"redirect_uri": None}, id="missing redirect_uri"),
        pytest.param({"redirect_uri": "javascript:alert(1)"}, id="javascript redirect_uri"),
        pytest.param({"redirect_uri": "ftp://app.test/cb"}, id="ftp redirect_uri"),
        pytest.param({"redirect_uri": "/relative/cb"}, id="relative redirect_uri"),
        pytest.param({"redirect_uri": "myapp:/cb"}, id="private-use scheme not a reverse domain"),
        pytest.param({"redirect_uri": "com.example.app:/cb#x"}, id="private-use scheme with a fragment"),
        pytest.param({"redirect_uri": "com.example.app:"}, id="private-use scheme alone"),
    ],
)
def test_an_untrustworthy_client_or_redirect_uri_gets_an_error_page_not_a_redirect(
    http: requests.Session, url: str, overrides: dict[str, str | None], cloudsync_fake: FakeCloudSync
) -> None:
    response = http.get(
        url + dialect.AUTHORIZE_PATH, params=authorize_params(**overrides), allow_redirects=False
    )

    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "Authorization error" in response.text
    assert cloudsync_fake.counters["authorize"] == 0


def test_a_request_without_scopes_asks_only_for_the_account(http: requests.Session, url: str) -> None:
    response = http.get(url + dialect.AUTHORIZE_PATH, params=authorize_params(scope=None))

    assert response.status_code == 200
    assert "Only your account id, name and email." in response.text
    assert "<ul>" not in response.text


def test_the_authorize_endpoint_answers_only_get_and_post(http: requests.Session, url: str) -> None:
    response = http.put(url + dialect.AUTHORIZE_PATH, params=authorize_params())

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST"
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"


def test_a_redirect_uri_that_is_not_ascii_gets_an_error_page(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    # RFC 3986 URIs are ASCII, and HTTP/1.1 could not carry this one back in a Location header.
    redirect_uri = "http://app.test/callback/\u20ac"

    response = http.get(url + dialect.AUTHORIZE_PATH, params=authorize_params(redirect_uri=redirect_uri))
    posted = http.post(
        url + dialect.AUTHORIZE_PATH,
        data={**authorize_params(redirect_uri=redirect_uri), "decision": "allow"},
        allow_redirects=False,
    )

    assert (response.status_code, posted.status_code) == (400, 400)
    assert "Authorization error" in posted.text
    assert cloudsync_fake.counters["authorize"] == 0


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        pytest.param({"response_type": "token"}, "unsupported_response_type", id="implicit grant"),
        pytest.param({"scope": "files:read files:delete"}, "invalid_scope", id="unknown scope"),
        pytest.param(
            {"code_challenge": pkce_pair()[1], "code_challenge_method": "plain"},
            dialect.INVALID_REQUEST,
            id="plain PKCE",
        ),
        pytest.param({"code_challenge": pkce_pair()[1]}, dialect.INVALID_REQUEST, id="PKCE without method"),
        pytest.param(
            {"code_challenge": "too-short", "code_challenge_method": "S256"},
            dialect.INVALID_REQUEST,
            id="malformed PKCE challenge",
        ),
        pytest.param({"response_type": None}, dialect.INVALID_REQUEST, id="no response_type"),
    ],
)
def test_a_bad_authorization_request_is_redirected_back_with_an_error(
    http: requests.Session, url: str, overrides: dict[str, str], error: str
) -> None:
    response = http.get(
        url + dialect.AUTHORIZE_PATH, params=authorize_params(**overrides), allow_redirects=False
    )

    params = callback_params(response)
    assert params["error"] == error
    assert params["state"] == "st-123"
    assert "code" not in params


def test_a_bad_authorization_request_without_state_is_redirected_back_without_one(
    http: requests.Session, url: str
) -> None:
    response = http.get(
        url + dialect.AUTHORIZE_PATH,
        params=authorize_params(state=None, response_type="token"),
        allow_redirects=False,
    )

    params = callback_params(response)
    assert params["error"] == "unsupported_response_type"
    assert "state" not in params


def test_a_repeated_parameter_is_redirected_back_as_invalid_request(http: requests.Session, url: str) -> None:
    query = urlencode({**authorize_params(), "scope": "files:read"}) + "&scope=files%3Awrite&state=st-2"

    response = http.get(url + dialect.AUTHORIZE_PATH + "?" + query, allow_redirects=False)

    params = callback_params(response)
    assert params["error"] == dialect.INVALID_REQUEST
    assert params["error_description"] == "Repeated parameters: scope, state."
    assert params["state"] == "st-123"  # the first one


# --------------------------------------------------------------------------- the code flow


def test_allow_then_code_exchange_then_the_api(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    params = decide(http, url)
    assert set(params) == {"code", "state"}
    assert params["state"] == "st-123"

    response = exchange(http, url, params["code"])

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    tokens = response.json()
    assert set(tokens) == {"access_token", "token_type", "expires_in", "scope", "refresh_token"}
    assert tokens["access_token"].startswith("at_test_")
    assert tokens["refresh_token"].startswith("rt_test_")
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3600
    assert tokens["scope"] == "workspaces:read offline_access"
    assert cloudsync_fake.last_token_request == {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "client_secret": "***",
        "code": params["code"],
        "redirect_uri": REDIRECT_URI,
    }

    me = call(http, url, dialect.ME_PATH, tokens["access_token"])
    assert me.json() == {"id": "usr_ada", "email": "ada@example.com", "name": "Ada Lovelace"}
    workspaces = call(http, url, dialect.WORKSPACES_PATH, tokens["access_token"]).json()["data"]
    assert [workspace["name"] for workspace in workspaces] == ["Personal", "Team"]
    assert all(workspace["id"].startswith("ws_") for workspace in workspaces)

    counters = cloudsync_fake.counters
    assert (counters["authorize"], counters["code_exchanges"], counters["api_calls"]) == (1, 1, 2)
    assert counters["api_calls_by_path"] == {dialect.ME_PATH: 1, dialect.WORKSPACES_PATH: 1}


def test_the_state_is_echoed_exactly_and_left_out_when_not_sent(http: requests.Session, url: str) -> None:
    odd_state = "a b+c/d?e=f&g%h é"

    assert decide(http, url, state=odd_state)["state"] == odd_state
    assert "state" not in decide(http, url, state=None)


def test_an_apps_private_use_redirect_uri_gets_a_code_it_exchanges_with_pkce(
    http: requests.Session, url: str
) -> None:
    # RFC 8252 §7.1: a native app's redirect URI is a scheme named after a domain it owns.
    app_uri = "com.example.app:/oauth2redirect"
    verifier, challenge = pkce_pair()
    page = consent(http, url, redirect_uri=app_uri, code_challenge=challenge, code_challenge_method="S256")
    answer = http.post(url + page.action, data={**page.hidden, "decision": "allow"}, allow_redirects=False)

    location = answer.headers["Location"]
    assert location.startswith(app_uri + "?")
    code = parse_qs(urlsplit(location).query)["code"][0]
    exchanged = exchange(http, url, code, redirect_uri=app_uri, code_verifier=verifier)
    assert exchanged.status_code == 200, exchanged.text


def test_the_code_is_added_to_a_redirect_uri_that_has_a_query(http: requests.Session, url: str) -> None:
    redirect_uri = REDIRECT_URI + "?next=%2Fhome"

    params = decide(http, url, redirect_uri=redirect_uri)

    assert params["next"] == "/home"
    assert exchange(http, url, params["code"], redirect_uri=redirect_uri).status_code == 200


@pytest.mark.parametrize("redirect_uri", [REDIRECT_URI + "?", REDIRECT_URI + "?next=%2Fhome&"])
def test_the_code_follows_a_redirect_uri_that_ends_its_query_with_a_separator(
    http: requests.Session, url: str, redirect_uri: str
) -> None:
    page = consent(http, url, redirect_uri=redirect_uri)
    answer = http.post(url + page.action, data={**page.hidden, "decision": "allow"}, allow_redirects=False)

    location = answer.headers["Location"]
    assert location.startswith(redirect_uri + "code=")
    code = parse_qs(urlsplit(location).query)["code"][0]
    assert exchange(http, url, code, redirect_uri=redirect_uri).status_code == 200


def test_deny_redirects_with_access_denied(http: requests.Session, url: str) -> None:
    params = decide(http, url, decision="deny")

    assert params["error"] == dialect.ACCESS_DENIED
    assert params["state"] == "st-123"
    assert "code" not in params


@pytest.mark.parametrize(
    ("form", "message"),
    [
        pytest.param(
            {"decision": "allow", "client_id": None}, "Unknown or missing client_id.", id="no client"
        ),
        pytest.param({"decision": "maybe"}, "Choose Allow or Deny.", id="no decision"),
        pytest.param({"decision": "allow", "user": "usr_nobody"}, "Unknown user.", id="unknown user"),
    ],
)
def test_a_consent_form_that_cannot_be_answered_gets_an_error_page(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync, form: dict[str, str | None], message: str
) -> None:
    data = {name: value for name, value in {**authorize_params(), **form}.items() if value is not None}

    response = http.post(url + dialect.AUTHORIZE_PATH, data=data, allow_redirects=False)

    assert response.status_code == 400
    assert "Location" not in response.headers
    assert message in response.text
    assert cloudsync_fake.counters["code_exchanges"] == 0


def test_the_consent_page_signs_in_as_the_chosen_user(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    cloudsync_fake.add_user("usr_grace", None, "Grace Hopper")

    code = decide(http, url, user="usr_grace")["code"]
    token = exchange(http, url, code).json()["access_token"]

    assert call(http, url, dialect.ME_PATH, token).json() == {
        "id": "usr_grace",
        "email": None,
        "name": "Grace Hopper",
    }


def test_without_offline_access_there_is_no_refresh_token(http: requests.Session, url: str) -> None:
    tokens = sign_in(http, url, scope="workspaces:read")

    assert "refresh_token" not in tokens
    assert tokens["scope"] == "workspaces:read"


def test_pkce_with_the_right_verifier_succeeds(http: requests.Session, url: str) -> None:
    verifier, challenge = pkce_pair()
    code = decide(http, url, code_challenge=challenge, code_challenge_method="S256")["code"]

    assert exchange(http, url, code, code_verifier=verifier).status_code == 200


@pytest.mark.parametrize("verifier", [None, "x" * 43, pytest.param("short", id="malformed")])
def test_pkce_with_a_wrong_or_missing_verifier_is_invalid_grant(
    http: requests.Session, url: str, verifier: str | None, cloudsync_fake: FakeCloudSync
) -> None:
    _, challenge = pkce_pair()
    code = decide(http, url, code_challenge=challenge, code_challenge_method="S256")["code"]
    fields = {} if verifier is None else {"code_verifier": verifier}

    assert_oauth_error(exchange(http, url, code, **fields), 400, dialect.INVALID_GRANT)
    assert cloudsync_fake.counters["invalid_grants"] == 1


def test_a_verifier_without_a_challenge_is_refused_as_a_pkce_downgrade(
    http: requests.Session, url: str
) -> None:
    code = decide(http, url)["code"]

    assert_oauth_error(exchange(http, url, code, code_verifier=pkce_pair()[0]), 400, dialect.INVALID_GRANT)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"redirect_uri": REDIRECT_URI + "x"}, id="other redirect_uri"),
        pytest.param({"redirect_uri": REDIRECT_URI.upper()}, id="redirect_uri not byte-identical"),
        pytest.param({"code": "no-such-code"}, id="unknown code"),
    ],
)
def test_a_code_exchange_must_match_the_authorization(
    http: requests.Session, url: str, fields: dict[str, str]
) -> None:
    code = decide(http, url)["code"]

    assert_oauth_error(exchange(http, url, **{"code": code, **fields}), 400, dialect.INVALID_GRANT)


def test_an_expired_code_is_invalid_grant(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    cloudsync_fake.code_lifetime = 0
    code = decide(http, url)["code"]

    assert_oauth_error(exchange(http, url, code), 400, dialect.INVALID_GRANT)


def test_a_replayed_code_is_refused_and_revokes_what_it_was_exchanged_for(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    code = decide(http, url)["code"]
    tokens = exchange(http, url, code).json()

    assert_oauth_error(exchange(http, url, code), 400, dialect.INVALID_GRANT)

    assert_invalid_token(call(http, url, dialect.ME_PATH, tokens["access_token"]))
    assert_oauth_error(refresh(http, url, tokens["refresh_token"]), 400, dialect.INVALID_GRANT)
    assert cloudsync_fake.counters["code_exchanges"] == 1


# --------------------------------------------------------------------------- the token endpoint's dialect


def test_a_form_encoded_token_request_is_refused(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    code = decide(http, url)["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }

    assert_oauth_error(http.post(url + dialect.TOKEN_PATH, data=form), 400, dialect.INVALID_REQUEST)
    assert cloudsync_fake.last_token_request is None
    assert exchange(http, url, code).status_code == 200  # the code was not spent


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param({"client_secret": "wrong"}, id="wrong secret"),
        pytest.param({"client_secret": None}, id="no secret"),
        pytest.param({"client_id": "someone-else"}, id="other client"),
    ],
)
def test_wrong_client_credentials_are_invalid_client(
    http: requests.Session, url: str, credentials: dict[str, str | None], cloudsync_fake: FakeCloudSync
) -> None:
    code = decide(http, url)["code"]

    response = exchange(http, url, code, **credentials)

    assert_oauth_error(response, 401, dialect.INVALID_CLIENT)
    assert "wrong" not in str(cloudsync_fake.last_token_request)


def test_the_client_secret_is_masked_in_last_token_request(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    token_request(http, url, grant_type="refresh_token", refresh_token="rt_test_x")

    assert cloudsync_fake.last_token_request == {
        "grant_type": "refresh_token",
        "client_id": CLIENT_ID,
        "client_secret": "***",
        "refresh_token": "rt_test_x",
    }


@pytest.mark.parametrize("grant_type", ["password", "client_credentials", "implicit"])
def test_other_grant_types_are_unsupported(http: requests.Session, url: str, grant_type: str) -> None:
    assert_oauth_error(token_request(http, url, grant_type=grant_type), 400, "unsupported_grant_type")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"grant_type": "refresh_token"', id="truncated JSON"),
        pytest.param(b'{"grant_type": "\xff"}', id="not UTF-8"),
        pytest.param(b'["grant_type", "refresh_token"]', id="not an object"),
    ],
)
def test_a_token_request_that_is_not_a_json_object_is_invalid_request(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync, body: bytes
) -> None:
    response = http.post(url + dialect.TOKEN_PATH, data=body, headers={"Content-Type": "application/json"})

    assert_oauth_error(response, 400, dialect.INVALID_REQUEST)
    assert cloudsync_fake.last_token_request is None
    assert cloudsync_fake.counters["token_requests"] == 1


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="no grant_type"),
        pytest.param({"grant_type": "authorization_code", "redirect_uri": REDIRECT_URI}, id="no code"),
        pytest.param({"grant_type": "refresh_token", "refresh_token": ""}, id="no refresh_token"),
    ],
)
def test_a_token_request_missing_a_field_is_invalid_request(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync, fields: dict[str, str]
) -> None:
    assert_oauth_error(token_request(http, url, **fields), 400, dialect.INVALID_REQUEST)
    assert cloudsync_fake.counters["invalid_grants"] == 0


def test_the_token_endpoint_answers_only_post(http: requests.Session, url: str) -> None:
    response = http.get(url + dialect.TOKEN_PATH)

    assert_oauth_error(response, 405, dialect.INVALID_REQUEST)
    assert response.headers["Allow"] == "POST"


# --------------------------------------------------------------------------- refreshing


def test_a_refresh_may_narrow_the_granted_scope_but_not_widen_it(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    tokens = sign_in(http, url, scope="workspaces:read workspaces:write offline_access")

    wider = token_request(
        http, url, grant_type="refresh_token", refresh_token=tokens["refresh_token"], scope="files:read"
    )
    not_a_string = token_request(
        http,
        url,
        grant_type="refresh_token",
        refresh_token=tokens["refresh_token"],
        scope=["workspaces:read"],
    )
    narrower = token_request(
        http, url, grant_type="refresh_token", refresh_token=tokens["refresh_token"], scope="workspaces:read"
    )

    assert_oauth_error(wider, 400, "invalid_scope")
    assert_oauth_error(not_a_string, 400, "invalid_scope")
    assert narrower.status_code == 200, narrower.text
    assert narrower.json()["scope"] == "workspaces:read"
    created = call(
        http, url, dialect.WORKSPACES_PATH, narrower.json()["access_token"], "POST", json={"name": "x"}
    )
    assert created.status_code == 403
    assert cloudsync_fake.counters["refreshes"] == 1


def test_a_refresh_rotates_the_refresh_token_and_the_old_one_is_then_dead(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    tokens = sign_in(http, url)

    response = refresh(http, url, tokens["refresh_token"])

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    fresh = response.json()
    assert set(fresh) == {"access_token", "token_type", "expires_in", "scope", "refresh_token"}
    assert fresh["refresh_token"] != tokens["refresh_token"]
    assert fresh["access_token"] != tokens["access_token"]
    assert fresh["scope"] == tokens["scope"]
    # The old access token lives until its own expiry.
    assert call(http, url, dialect.ME_PATH, tokens["access_token"]).status_code == 200
    counters = cloudsync_fake.counters
    assert (counters["refreshes"], counters["refresh_attempts"]) == (1, 1)
    assert cloudsync_fake.refreshes_by_user == {"usr_ada": 1}


def test_a_second_clients_grant_is_refreshed_only_by_that_client(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    cloudsync_fake.add_client("mobile-app", "mobile-secret")
    code = decide(http, url, client_id="mobile-app")["code"]
    assert_oauth_error(exchange(http, url, code), 400, dialect.INVALID_GRANT)  # not the site's code
    code = decide(http, url, client_id="mobile-app")["code"]
    issued = exchange(http, url, code, client_id="mobile-app", client_secret="mobile-secret").json()

    by_the_site = refresh(http, url, issued["refresh_token"])
    wrong_secret = token_request(
        http,
        url,
        grant_type="refresh_token",
        refresh_token=issued["refresh_token"],
        client_id="mobile-app",
        client_secret=CLIENT_SECRET,
    )
    by_its_app = token_request(
        http,
        url,
        grant_type="refresh_token",
        refresh_token=issued["refresh_token"],
        client_id="mobile-app",
        client_secret="mobile-secret",
    )

    assert_oauth_error(by_the_site, 400, dialect.INVALID_GRANT)
    assert_oauth_error(wrong_secret, 401, dialect.INVALID_CLIENT)
    assert by_its_app.status_code == 200, by_its_app.text
    cloudsync_fake.restore_defaults()
    assert consent_status(http, url, client_id="mobile-app") == 400  # forgotten with the defaults


def consent_status(http: requests.Session, url: str, **overrides: str | None) -> int:
    return http.get(url + dialect.AUTHORIZE_PATH, params=authorize_params(**overrides)).status_code


def test_presenting_a_rotated_refresh_token_again_revokes_the_whole_family(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    tokens = sign_in(http, url)
    fresh = refresh(http, url, tokens["refresh_token"]).json()

    assert_oauth_error(refresh(http, url, tokens["refresh_token"]), 400, dialect.INVALID_GRANT)

    for access_token in (tokens["access_token"], fresh["access_token"]):
        assert_invalid_token(call(http, url, dialect.ME_PATH, access_token))
    assert_oauth_error(refresh(http, url, fresh["refresh_token"]), 400, dialect.INVALID_GRANT)
    counters = cloudsync_fake.counters
    assert (counters["refreshes"], counters["refresh_attempts"], counters["invalid_grants"]) == (1, 3, 2)


def test_a_refresh_before_half_the_token_lifetime_counts_as_early(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(cloudsync_fake, "_clock", lambda: clock[0])
    cloudsync_fake.token_lifetime = 10
    tokens = sign_in(http, url)

    clock[0] += 4.9  # less than half of 10 s: a refresh nobody needed yet
    early = refresh(http, url, tokens["refresh_token"]).json()
    clock[0] += 5.0  # half the lifetime of the token just issued
    refresh(http, url, early["refresh_token"])

    counters = cloudsync_fake.counters
    assert (counters["refreshes"], counters["early_refreshes"]) == (2, 1)


def test_racing_refreshes_with_one_rotating_token_let_exactly_one_win(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    refresh_token = sign_in(http, url)["refresh_token"]
    statuses: list[int] = []
    barrier = threading.Barrier(6)

    def racer() -> None:
        with requests.Session() as session:
            barrier.wait()
            statuses.append(refresh(session, url, refresh_token).status_code)

    threads = [threading.Thread(target=racer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200, 400, 400, 400, 400, 400]
    assert cloudsync_fake.counters["refreshes"] == 1  # and the losers' reuse revoked the family


def test_without_rotation_the_refresh_token_is_kept_and_reusable(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    cloudsync_fake.rotate_refresh_tokens = False
    tokens = sign_in(http, url)

    first = refresh(http, url, tokens["refresh_token"])
    second = refresh(http, url, tokens["refresh_token"])

    assert first.status_code == second.status_code == 200
    assert "refresh_token" not in first.json()
    assert first.json()["scope"] == tokens["scope"]


def test_the_scope_can_be_left_out_of_a_refresh_response(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    cloudsync_fake.omit_scope_on_refresh = True
    tokens = sign_in(http, url)

    assert "scope" not in refresh(http, url, tokens["refresh_token"]).json()


def test_expires_in_follows_the_token_lifetime_set_at_any_time(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    tokens = sign_in(http, url)
    cloudsync_fake.token_lifetime = 2

    assert refresh(http, url, tokens["refresh_token"]).json()["expires_in"] == 2


# --------------------------------------------------------------------------- the API


def test_an_expired_access_token_is_invalid_token(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    tokens = sign_in(http, url)
    cloudsync_fake.expire_access_tokens()
    assert_invalid_token(call(http, url, dialect.ME_PATH, tokens["access_token"]))

    cloudsync_fake.token_lifetime = 0
    born_expired = refresh(http, url, tokens["refresh_token"]).json()
    assert_invalid_token(call(http, url, dialect.ME_PATH, born_expired["access_token"]))


@pytest.mark.parametrize("token", [None, "at_test_unknown", ""])
def test_a_missing_or_unknown_token_is_invalid_token(
    http: requests.Session, url: str, token: str | None
) -> None:
    assert_invalid_token(call(http, url, dialect.ME_PATH, token))


def test_a_token_in_the_query_string_is_not_accepted(http: requests.Session, url: str) -> None:
    token = sign_in(http, url)["access_token"]

    assert_invalid_token(http.get(url + dialect.ME_PATH, params={"access_token": token}))


def test_a_token_of_another_scheme_is_not_accepted(http: requests.Session, url: str) -> None:
    token = sign_in(http, url)["access_token"]

    assert_invalid_token(http.get(url + dialect.ME_PATH, headers={"Authorization": f"Token {token}"}))


def test_revoked_tokens_are_invalid_only_for_the_user_revoked(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    cloudsync_fake.add_user("usr_grace", None, "Grace Hopper")
    ada = sign_in(http, url)
    grace = exchange(http, url, decide(http, url, user="usr_grace")["code"]).json()

    assert cloudsync_fake.revoke_tokens("usr_ada") == 1

    assert_invalid_token(call(http, url, dialect.ME_PATH, ada["access_token"]))
    assert_oauth_error(refresh(http, url, ada["refresh_token"]), 400, dialect.INVALID_GRANT)
    assert call(http, url, dialect.ME_PATH, grace["access_token"]).status_code == 200


def test_listing_workspaces_needs_workspaces_read(http: requests.Session, url: str) -> None:
    token = sign_in(http, url, scope="files:read")["access_token"]

    response = call(http, url, dialect.WORKSPACES_PATH, token)

    assert response.status_code == 403
    assert response.json() == {"error": dialect.INSUFFICIENT_SCOPE}
    assert (
        response.headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope", scope="workspaces:read"'
    )
    assert call(http, url, dialect.ME_PATH, token).status_code == 200  # /v1/me needs no scope


def test_creating_a_workspace_needs_workspaces_write_and_a_name(http: requests.Session, url: str) -> None:
    reader = sign_in(http, url, scope="workspaces:read")["access_token"]
    writer = sign_in(http, url, scope="workspaces:read workspaces:write")["access_token"]

    refused = call(http, url, dialect.WORKSPACES_PATH, reader, "POST", json={"name": "Lab"})
    assert refused.status_code == 403
    assert 'scope="workspaces:write"' in refused.headers["WWW-Authenticate"]
    for bad in ({}, {"name": ""}, {"name": 7}, ["Lab"]):
        response = call(http, url, dialect.WORKSPACES_PATH, writer, "POST", json=bad)
        assert (response.status_code, response.json()) == (400, {"error": dialect.INVALID_REQUEST})

    created = call(http, url, dialect.WORKSPACES_PATH, writer, "POST", json={"name": "Lab"})

    assert created.status_code == 201
    assert created.json()["name"] == "Lab"
    listed = call(http, url, dialect.WORKSPACES_PATH, reader).json()["data"]
    assert created.json() in listed


def test_an_unknown_api_path_is_not_found(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    token = sign_in(http, url)["access_token"]

    response = call(http, url, "/v1/files", token)

    assert (response.status_code, response.json()) == (404, {"error": "not_found"})
    assert cloudsync_fake.api_calls_by_path == {"/v1/files": 1}


def test_an_api_path_answers_only_its_methods(http: requests.Session, url: str) -> None:
    token = sign_in(http, url)["access_token"]

    response = call(http, url, dialect.ME_PATH, token, "PATCH", json={"name": "Ada"})

    assert (response.status_code, response.json()) == (405, {"error": "method_not_allowed"})
    assert response.headers["Allow"] == "GET"


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("kind", "status", "content_type"),
    [
        ("server_error", 500, "application/json"),
        ("bad_gateway", 502, "text/html; charset=utf-8"),
        ("invalid_json", 200, "application/json"),
        ("html", 200, "text/html; charset=utf-8"),
        ("rate_limited", 429, "application/json"),
    ],
)
@pytest.mark.parametrize("endpoint", ["token", "api", "me"])
def test_each_fault_answers_once_then_service_resumes(
    http: requests.Session,
    url: str,
    cloudsync_fake: FakeCloudSync,
    endpoint: str,
    kind: str,
    status: int,
    content_type: str,
) -> None:
    tokens = sign_in(http, url)
    cloudsync_fake.fail_next(endpoint, kind)

    def attempt() -> requests.Response:
        if endpoint == "token":
            return refresh(http, url, tokens["refresh_token"])
        return call(http, url, dialect.ME_PATH, tokens["access_token"])

    faulty = attempt()
    assert (faulty.status_code, faulty.headers["Content-Type"]) == (status, content_type)
    if kind == "invalid_json":
        with pytest.raises(ValueError):  # noqa: PT011 - requests' JSONDecodeError is a ValueError
            faulty.json()
    if kind in ("server_error", "rate_limited"):
        assert faulty.json() == {"error": kind}
    assert attempt().status_code == 200
    assert cloudsync_fake.counters["faults_injected"] == 1


def test_rate_limited_sends_retry_after_when_given(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    cloudsync_fake.fail_next("api", "rate_limited", retry_after=7)
    cloudsync_fake.fail_next("api", "rate_limited")

    assert http.get(url + dialect.ME_PATH).headers["Retry-After"] == "7"
    assert "Retry-After" not in http.get(url + dialect.ME_PATH).headers


def test_a_timeout_fault_stalls_past_the_client_timeout_then_answers_504(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    cloudsync_fake.timeout_delay = 0.5
    cloudsync_fake.fail_next("token", "timeout")
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.post(url + dialect.TOKEN_PATH, json={"grant_type": "refresh_token"}, timeout=FAST)

    cloudsync_fake.timeout_delay = 0.05
    cloudsync_fake.fail_next("workspaces", "timeout")
    started = time.monotonic()
    response = http.get(url + dialect.WORKSPACES_PATH, timeout=2)
    assert response.status_code == 504
    assert time.monotonic() - started >= 0.05


def test_an_invalid_grant_fault_leaves_the_refresh_token_alive(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    tokens = sign_in(http, url)
    cloudsync_fake.fail_next("token", "invalid_grant")

    assert_oauth_error(refresh(http, url, tokens["refresh_token"]), 400, dialect.INVALID_GRANT)
    assert refresh(http, url, tokens["refresh_token"]).status_code == 200
    counters = cloudsync_fake.counters
    assert (counters["invalid_grants"], counters["refresh_attempts"], counters["refreshes"]) == (1, 2, 1)


def test_faults_are_served_in_order_and_times_counts(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    cloudsync_fake.fail_next("api", "server_error", times=2)
    cloudsync_fake.fail_next("api", "bad_gateway")

    statuses = [http.get(url + dialect.ME_PATH).status_code for _ in range(4)]

    assert statuses == [500, 500, 502, 401]


def test_an_endpoint_specific_fault_only_hits_its_path(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    cloudsync_fake.fail_next("workspaces", "server_error")

    assert http.get(url + dialect.ME_PATH).status_code == 401
    assert http.get(url + dialect.WORKSPACES_PATH).status_code == 500


def test_fail_always_lasts_until_cleared(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    cloudsync_fake.fail_always("api", "bad_gateway")
    assert [http.get(url + dialect.ME_PATH).status_code for _ in range(3)] == [502, 502, 502]

    cloudsync_fake.clear_faults()

    assert http.get(url + dialect.ME_PATH).status_code == 401


@pytest.mark.parametrize(
    ("endpoint", "kind", "times"),
    [("oauth", "server_error", 1), ("token", "teapot", 1), ("me", "invalid_grant", 1), ("api", "html", 0)],
)
def test_a_fault_that_cannot_happen_is_refused(
    cloudsync_fake: FakeCloudSync, endpoint: str, kind: str, times: int
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is not the contract
        cloudsync_fake.fail_next(endpoint, kind, times=times)


def test_respond_next_answers_once_with_exactly_the_scripted_response(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    tokens = sign_in(http, url)
    cloudsync_fake.respond_next(
        "me", 299, b"\xff not json", [("Content-Type", "text/x-odd"), ("Retry-After", "\xb2")]
    )
    cloudsync_fake.respond_next("token", 200, b'{"token_type": "mac"}')  # no Content-Type at all

    scripted = call(http, url, dialect.ME_PATH, tokens["access_token"])
    assert (scripted.status_code, scripted.content) == (299, b"\xff not json")
    assert (scripted.headers["Content-Type"], scripted.headers["Retry-After"]) == ("text/x-odd", "\xb2")
    assert scripted.headers["Cache-Control"] == "no-store"
    untyped = refresh(http, url, tokens["refresh_token"])
    assert (untyped.status_code, untyped.content) == (200, b'{"token_type": "mac"}')
    assert "Content-Type" not in untyped.headers

    # Each was answered once; the same connection then serves the real answers.
    assert call(http, url, dialect.ME_PATH, tokens["access_token"]).json()["id"] == "usr_ada"
    assert refresh(http, url, tokens["refresh_token"]).status_code == 200
    counters = cloudsync_fake.counters
    assert (counters["faults_injected"], counters["refreshes"], counters["connections"]) == (2, 1, 1)


@pytest.mark.parametrize(
    ("endpoint", "status", "body", "headers"),
    [
        ("oauth", 200, b"", None),
        ("api", 100, b"", None),
        ("api", 600, b"", None),
        ("api", 204, b"body", None),
        ("api", 200, "text", None),
        ("api", 200, b"", [("Content-Length", "99")]),
        ("api", 200, b"", [("Bad Name", "x")]),
        ("api", 200, b"", [("X-Split", "a\r\nSet-Cookie: x=1")]),
        ("api", 200, b"", [("X-Wide", "\u20ac")]),
    ],
)
def test_a_scripted_response_http_cannot_carry_is_refused(
    cloudsync_fake: FakeCloudSync, endpoint: str, status: int, body: Any, headers: Any
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is not the contract
        cloudsync_fake.respond_next(endpoint, status, body, headers)

    assert cloudsync_fake.counters["faults_injected"] == 0


# --------------------------------------------------------------------------- delays and hostile answers


def raw_get(url: str, path: str, token: str | None = None) -> tuple[HTTPResponse, list[bytes]]:
    """GET ``path`` with ``http.client`` and keep the body as it came off the socket, one piece per
    read: what a client sees of the wire, before any decoding."""
    parts = urlsplit(url)
    connection = HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = connection.getresponse()
        pieces = []
        while piece := response.read1(64 * 1024):
            pieces.append(piece)
        return response, pieces
    finally:
        connection.close()


def without_date(headers: Any) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() != "date"}


def test_a_delayed_answer_arrives_intact_stalled_or_dripped(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    tokens = sign_in(http, url)
    undelayed = call(http, url, dialect.WORKSPACES_PATH, tokens["access_token"])
    cloudsync_fake.delay_next("workspaces", 0.05)
    cloudsync_fake.delay_next("workspaces", 0.05, drip=True)
    cloudsync_fake.delay_next("token", 0.05, drip=True)

    stalled = call(http, url, dialect.WORKSPACES_PATH, tokens["access_token"])
    dripped = call(http, url, dialect.WORKSPACES_PATH, tokens["access_token"])
    fresh = refresh(http, url, tokens["refresh_token"])

    assert stalled.status_code == dripped.status_code == 200
    assert stalled.content == dripped.content == undelayed.content
    # The same headers, but for the Date, which a delay may carry over into the next second.
    assert without_date(stalled.headers) == without_date(dripped.headers) == without_date(undelayed.headers)
    assert fresh.status_code == 200
    assert set(fresh.json()) == {"access_token", "token_type", "expires_in", "scope", "refresh_token"}
    assert call(http, url, dialect.ME_PATH, fresh.json()["access_token"]).json()["id"] == "usr_ada"
    counters = cloudsync_fake.counters
    # Three answers delayed, one each; the keep-alive connection carried them all, drips included.
    assert (counters["delayed_answers"], counters["refreshes"], counters["connections"]) == (3, 1, 1)


def test_a_delayed_refresh_is_done_though_its_answer_comes_too_late(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    tokens = sign_in(http, url)
    cloudsync_fake.delay_next("token", 0.5)
    body = {
        "grant_type": "refresh_token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": tokens["refresh_token"],
    }

    with pytest.raises(requests.exceptions.ReadTimeout):
        http.post(url + dialect.TOKEN_PATH, json=body, timeout=FAST)

    # The request was handled on arrival; only its answer was held back. Bounded wait for the
    # server thread, in case the machine is slow to schedule it.
    for _ in range(500):
        if cloudsync_fake.counters["refreshes"]:
            break
        time.sleep(0.01)
    assert cloudsync_fake.counters["refreshes"] == 1
    # So the client that gave up holds a rotated refresh token: presenting it again is theft.
    assert_oauth_error(refresh(http, url, tokens["refresh_token"]), 400, dialect.INVALID_GRANT)
    assert cloudsync_fake.counters["delayed_answers"] == 1


def test_delays_queue_per_endpoint_like_faults_and_always_lasts_until_cleared(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    def delayed() -> int:
        return int(cloudsync_fake.counters["delayed_answers"])

    cloudsync_fake.delay_next("workspaces", 0)
    http.get(url + dialect.ME_PATH)
    assert delayed() == 0  # a workspaces delay waits for /v1/workspaces
    http.get(url + dialect.WORKSPACES_PATH)
    assert delayed() == 1

    cloudsync_fake.delay_always("api", 0, drip=True)
    statuses = [http.get(url + path).status_code for path in (dialect.ME_PATH, "/v1/files", "/v1/me")]
    http.post(url + dialect.TOKEN_PATH, json={})  # the token endpoint is not an API path
    assert (statuses, delayed()) == ([401, 404, 401], 4)

    cloudsync_fake.clear_delays()
    http.get(url + dialect.ME_PATH)
    assert delayed() == 4

    cloudsync_fake.delay_always("me", 0)
    cloudsync_fake.reset()
    http.get(url + dialect.ME_PATH)
    assert delayed() == 0  # reset forgot the delay, and the count


def test_a_delay_applies_to_a_faulty_answer_too(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    cloudsync_fake.fail_next("me", "server_error")
    cloudsync_fake.delay_next("api", 0.05, drip=True)

    response = http.get(url + dialect.ME_PATH)

    assert (response.status_code, response.json()) == (500, {"error": "server_error"})
    counters = cloudsync_fake.counters
    assert (counters["faults_injected"], counters["delayed_answers"]) == (1, 1)


@pytest.mark.parametrize(
    ("endpoint", "seconds", "times", "drip"),
    [
        ("oauth", 1, 1, False),
        ("api", -0.1, 1, False),
        ("api", MAX_DELAY + 1, 1, False),
        ("api", float("inf"), 1, False),
        ("api", float("nan"), 1, False),
        ("api", True, 1, False),
        ("api", "1", 1, False),
        ("api", 1, 0, False),
        ("api", 1, 1, "yes"),
    ],
)
def test_a_delay_that_cannot_happen_is_refused(
    http: requests.Session,
    url: str,
    cloudsync_fake: FakeCloudSync,
    endpoint: str,
    seconds: Any,
    times: Any,
    drip: Any,
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is not the contract
        cloudsync_fake.delay_next(endpoint, seconds, times=times, drip=drip)

    http.get(url + dialect.ME_PATH)
    assert cloudsync_fake.counters["delayed_answers"] == 0


def test_the_control_endpoints_set_and_clear_delays(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    assert http.post(url + "/_fake/delays", json={"endpoint": "me", "seconds": 0, "times": 2}).ok
    assert http.post(url + "/_fake/delays", json={"endpoint": "token", "seconds": 0.01, "drip": True}).ok
    for _ in range(3):
        http.get(url + dialect.ME_PATH)
    http.post(url + dialect.TOKEN_PATH, json={})
    assert http.get(url + "/_fake/counters").json()["delayed_answers"] == 3

    assert http.post(url + "/_fake/delays", json={"endpoint": "api", "seconds": 0, "always": True}).ok
    assert http.delete(url + "/_fake/delays").json() == {"ok": True}
    http.get(url + dialect.ME_PATH)
    assert cloudsync_fake.counters["delayed_answers"] == 3

    for refused in ({"endpoint": "me"}, {"endpoint": "me", "seconds": MAX_DELAY * 2}, {"seconds": 1}):
        assert_oauth_error(http.post(url + "/_fake/delays", json=refused), 400, dialect.INVALID_REQUEST)


def test_a_dripped_answer_leaves_in_small_chunks_after_its_headers(
    url: str, cloudsync_fake: FakeCloudSync
) -> None:
    undelayed = b"".join(raw_get(url, dialect.ME_PATH)[1])
    cloudsync_fake.delay_next("me", 1.0, drip=True)  # 26 bytes: 4 chunks, a pause of 0.25 s each

    response, pieces = raw_get(url, dialect.ME_PATH)

    # getresponse() returned on the headers alone, the body then came in pieces: a per-read
    # timeout longer than a pause would never fire on this answer.
    assert response.status == 401
    assert int(response.headers["Content-Length"]) == len(undelayed)
    assert b"".join(pieces) == undelayed
    assert len(pieces) >= 2
    # Every piece but the last ends on a chunk boundary: the body was written a chunk at a time.
    assert all(len(piece) % DRIP_CHUNK_BYTES == 0 for piece in pieces[:-1])
    assert cloudsync_fake.counters["delayed_answers"] == 1


def test_a_gzip_bomb_is_small_on_the_wire_and_inflates_to_many_megabytes(
    url: str, cloudsync_fake: FakeCloudSync
) -> None:
    cloudsync_fake.fail_next("me", "gzip_bomb")

    response, pieces = raw_get(url, dialect.ME_PATH)

    sent = b"".join(pieces)
    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Content-Type"] == "application/json"
    assert int(response.headers["Content-Length"]) == len(sent) < 64 * 1024
    # Inflated a megabyte at a time, as a careful client would, never all at once.
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    inflated, head, pending = 0, b"", sent
    while pending and not inflater.eof:
        block = inflater.decompress(pending, 1024 * 1024)
        head = head or block[:10]
        inflated += len(block)
        pending = inflater.unconsumed_tail
    assert inflater.eof
    assert inflated == GZIP_BOMB_BYTES >= 1000 * len(sent)
    assert head == b'{"data": ['
    assert cloudsync_fake.counters["faults_injected"] == 1
    assert raw_get(url, dialect.ME_PATH)[0].status == 401  # once, then service resumes


# --------------------------------------------------------------------------- the server


def test_one_session_reuses_one_keep_alive_connection(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    tokens = sign_in(http, url)
    for _ in range(5):
        response = call(http, url, dialect.ME_PATH, tokens["access_token"])
        assert response.raw.version == 11
        assert int(response.headers["Content-Length"]) == len(response.content)
    refresh(http, url, tokens["refresh_token"])
    http.get(url + "/nowhere")

    assert cloudsync_fake.counters["connections"] == 1


def test_the_server_only_listens_on_loopback() -> None:
    for host in ("0.0.0.0", "192.168.1.10", "example.com", "::"):  # noqa: S104 - the point of the test
        with pytest.raises(ValueError, match="loopback"):
            FakeCloudSyncServer(host=host)


def test_stop_closes_idle_keep_alive_connections_instead_of_waiting_for_them() -> None:
    server = FakeCloudSyncServer().start()
    idle = HTTPConnection(server.host, server.port, timeout=FAST)
    idle.request("GET", dialect.ME_PATH)
    answer = idle.getresponse()
    answer.read()
    assert (answer.status, answer.will_close) == (401, False)  # kept alive, now idle
    assert idle.sock is not None

    server.stop()

    # The server hung up on the idle connection (end of stream, long before its idle timeout):
    # nothing is left for stop() to wait for.
    assert idle.sock.recv(1) == b""
    assert server.fake.counters["connections"] == 1
    with requests.Session() as session, pytest.raises(requests.exceptions.ConnectionError):
        session.get(server.url + dialect.ME_PATH, timeout=FAST)
    idle.close()
    server.stop()  # idempotent


def test_a_server_serves_the_fake_it_was_given_and_says_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    fake = FakeCloudSync(client_id="cid", client_secret="super-secret", token_lifetime=5)
    with FakeCloudSyncServer(fake) as server, requests.Session() as http:
        assert server.fake is fake
        assert server.url.startswith("http://127.0.0.1:")
        code = decide(http, server.url, client_id="cid")["code"]
        body = {
            "grant_type": "authorization_code",
            "client_id": "cid",
            "client_secret": "super-secret",
            "code": code,
            "redirect_uri": REDIRECT_URI,
        }
        tokens = http.post(server.url + dialect.TOKEN_PATH, json=body).json()
        assert tokens["expires_in"] == 5
        call(http, server.url, dialect.ME_PATH, tokens["access_token"])

    out, err = capfd.readouterr()
    assert out == err == ""
    assert "super-secret" not in repr(fake)


def raw_exchange(server: FakeCloudSyncServer, request: bytes) -> bytes:
    """Send ``request`` as is and read until the server closes the connection (bounded by a
    timeout that only a server keeping the connection open reaches: the test then fails)."""
    with socket.create_connection((server.host, server.port), timeout=2) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param(b"Transfer-Encoding: chunked\r\n", b"411", id="chunked"),
        pytest.param(b"Content-Length: many\r\n", b"400", id="not a number"),
        pytest.param(b"Content-Length: -5\r\n", b"400", id="negative"),
        pytest.param(f"Content-Length: {MAX_BODY_BYTES + 1}\r\n".encode(), b"413", id="too large"),
    ],
)
def test_a_request_body_the_server_cannot_read_is_refused_and_the_connection_closed(
    cloudsync_server: FakeCloudSyncServer, cloudsync_fake: FakeCloudSync, headers: bytes, status: bytes
) -> None:
    request = b"POST /oauth/token HTTP/1.1\r\nHost: fake\r\nContent-Type: application/json\r\n" + headers

    answer = raw_exchange(cloudsync_server, request + b"\r\n{}")

    assert answer.startswith(b"HTTP/1.1 " + status + b" ")
    assert b"\r\nConnection: close\r\n" in answer
    assert cloudsync_fake.counters["token_requests"] == 0


class MisbehavingFake(FakeCloudSync):
    """A fake whose answer is whatever ``answer`` does: to see the server cope with an app that
    breaks the WSGI promises the real fake keeps."""

    def __init__(self, answer: Callable[[StartResponse], Iterable[bytes]]) -> None:
        super().__init__()
        self.answer = answer

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        return self.answer(start_response)


def chunks_of(
    declared: str | None, chunks: Callable[[], Iterable[bytes]]
) -> Callable[[StartResponse], Iterable[bytes]]:
    """Each answer: ``Content-Length: declared`` (or none), then a new iterable from ``chunks``."""

    def answer(start_response: StartResponse) -> Iterable[bytes]:
        length = [] if declared is None else [("Content-Length", declared)]
        start_response("200 OK", [("Content-Type", "text/plain"), *length])
        return chunks()

    return answer


def streamed(*chunks: bytes) -> Iterator[bytes]:
    yield from chunks


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        pytest.param(chunks_of("5", lambda: streamed(b"abc", b"defgh")), b"abc", id="longer than declared"),
        pytest.param(chunks_of("10", lambda: iter([b"abc"])), b"abc", id="shorter than declared"),
    ],
)
def test_a_streamed_body_unlike_its_content_length_closes_the_connection(
    answer: Callable[[StartResponse], Iterable[bytes]], body: bytes
) -> None:
    with FakeCloudSyncServer(MisbehavingFake(answer)) as server:
        received = raw_exchange(server, b"GET /v1/me HTTP/1.1\r\nHost: fake\r\n\r\n")

    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert received.endswith(b"\r\n\r\n" + body)  # never a byte past the length announced


@pytest.mark.parametrize("declared", [None, "many"])
def test_a_body_without_a_usable_content_length_is_joined_and_measured(declared: str | None) -> None:
    with (
        FakeCloudSyncServer(MisbehavingFake(chunks_of(declared, lambda: streamed(b"ab", b"cd")))) as server,
        requests.Session() as session,
    ):
        answers = [session.get(server.url + dialect.ME_PATH, timeout=2) for _ in range(2)]

    assert [(a.status_code, a.content, a.headers["Content-Length"]) for a in answers] == [
        (200, b"abcd", "4")
    ] * 2
    assert server.fake.counters["connections"] == 1  # kept alive: the length was right


def test_an_exception_in_the_app_is_a_500_and_one_line_without_its_message(
    capfd: pytest.CaptureFixture[str],
) -> None:
    def answer(start_response: StartResponse) -> Iterable[bytes]:
        raise RuntimeError("rt_test_secret")

    with FakeCloudSyncServer(MisbehavingFake(answer)) as server, requests.Session() as session:
        response = session.get(server.url + dialect.ME_PATH, timeout=2)

    assert (response.status_code, response.json()) == (500, {"error": "server_error"})
    err = capfd.readouterr().err
    assert err.startswith("fake CloudSync: RuntimeError at ")
    assert err.count("\n") == 1
    assert "rt_test_secret" not in err


def test_an_answer_http_cannot_carry_drops_the_connection_with_one_line(
    capfd: pytest.CaptureFixture[str],
) -> None:
    def answer(start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("X-Wide", "\u20ac")])
        return [b""]

    with (
        FakeCloudSyncServer(MisbehavingFake(answer)) as server,
        requests.Session() as session,
        pytest.raises(requests.exceptions.ConnectionError),
    ):
        session.get(server.url + dialect.ME_PATH, timeout=2)

    assert capfd.readouterr().err == "fake CloudSync: UnicodeEncodeError while serving a connection\n"


def test_a_server_has_a_url_once_started_and_starts_once() -> None:
    server = FakeCloudSyncServer()
    with pytest.raises(RuntimeError, match="no port until it is started"):
        server.url  # noqa: B018 - the property is the point
    assert repr(server) == "<FakeCloudSyncServer stopped>"

    server.start()
    try:
        assert repr(server) == f"<FakeCloudSyncServer {server.url}>"
        with pytest.raises(RuntimeError, match="already started"):
            server.start()
        with server, requests.Session() as session:  # entering a started server keeps it
            assert session.get(server.url + dialect.ME_PATH, timeout=2).status_code == 401
        assert repr(server) == "<FakeCloudSyncServer stopped>"  # leaving it stops it
    finally:
        server.stop()
    assert server.fake.counters["connections"] == 1


def test_the_fake_runs_as_its_own_process() -> None:
    with subprocess.Popen(  # leaving the block closes the pipe
        [sys.executable, "-m", "django_cloudsync.testing", "--port", "0", "--token-lifetime", "7"],
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("Fake CloudSync listening on http://127.0.0.1:")
            base = line.split()[4]
            assert requests.get(base + "/_fake/config", timeout=2).json()["token_lifetime"] == 7
        finally:
            process.terminate()
            assert process.wait(timeout=5) == 0


def test_the_standalone_fake_stops_on_ctrl_c() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "django_cloudsync.testing", "--port", "0"], stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            base = process.stdout.readline().split()[4]
            assert requests.get(base + "/_fake/counters", timeout=2).ok
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=5) == 0
        finally:
            process.kill()  # a no-op once it has exited
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(base + "/_fake/counters", timeout=2)


def test_the_standalone_fake_refuses_a_negative_token_lifetime(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        standalone.main(["--port", "0", "--token-lifetime", "-1"])

    assert exited.value.code == 2
    assert "--token-lifetime must not be negative" in capsys.readouterr().err


def test_the_standalone_fake_refuses_a_public_host() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "django_cloudsync.testing", "--host", "0.0.0.0", "--port", "0"],  # noqa: S104
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )

    assert result.returncode == 2
    assert "loopback" in result.stderr


# --------------------------------------------------------------------------- mount()


def run_wsgi(
    app: Any, method: str, path: str, query: str = "", body: bytes = b"", content_type: str = ""
) -> tuple[str, dict[str, str], bytes]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    setup_testing_defaults(environ)
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"], captured["headers"] = status, dict(headers)

    payload = b"".join(app(environ, start_response))
    return captured["status"], captured["headers"], payload


def django_stand_in(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"django:{environ['SCRIPT_NAME']}|{environ['PATH_INFO']}".encode()]


def test_mount_sends_the_prefix_to_the_fake_and_the_rest_to_django() -> None:
    fake = FakeCloudSync()
    app = mount(django_stand_in, fake, prefix="/fake-cloudsync")

    assert run_wsgi(app, "GET", "/accounts/login/")[2] == b"django:|/accounts/login/"
    assert run_wsgi(app, "GET", "/fake-cloudsyncx/v1/me")[2] == b"django:|/fake-cloudsyncx/v1/me"
    status, headers, _ = run_wsgi(app, "GET", "/fake-cloudsync/v1/me")
    assert status == "401 Unauthorized"
    assert headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_mount_needs_a_prefix() -> None:
    with pytest.raises(ValueError, match="non-empty prefix"):
        mount(django_stand_in, FakeCloudSync(), prefix="/")


@pytest.mark.parametrize(
    ("content_length", "status"),
    [
        ("many", "400 Bad Request"),
        # Python 3.13 renamed 413's phrase (RFC 9110's "Content Too Large"): the fake says what http does.
        (str(MAX_BODY_BYTES + 1), f"413 {HTTPStatus.REQUEST_ENTITY_TOO_LARGE.phrase}"),
    ],
)
def test_a_mounted_fake_reads_no_body_it_cannot_trust(content_length: str, status: str) -> None:
    fake = FakeCloudSync()
    app = mount(django_stand_in, fake)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/fake-cloudsync/oauth/token",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": content_length,
        "wsgi.input": io.BytesIO(b'{"grant_type": "refresh_token"}'),
    }
    setup_testing_defaults(environ)
    captured: list[str] = []

    body = b"".join(app(environ, lambda status, headers, exc_info=None: captured.append(status)))

    assert captured == [status]
    assert environ["wsgi.input"].tell() == 0  # not a byte read
    assert fake.counters["refresh_attempts"] == 0
    assert b"invalid_request" in body


def test_a_mounted_fake_runs_the_whole_flow_under_its_prefix() -> None:
    fake = FakeCloudSync()
    app = mount(django_stand_in, fake, prefix="/fake-cloudsync/")

    status, _, page = run_wsgi(app, "GET", "/fake-cloudsync/oauth/authorize", urlencode(authorize_params()))
    assert status == "200 OK"
    form = ConsentPage(page.decode())
    assert form.action == "/fake-cloudsync/oauth/authorize"
    decision = urlencode({**form.hidden, "decision": "allow"}).encode()
    status, headers, _ = run_wsgi(
        app,
        "POST",
        "/fake-cloudsync/oauth/authorize",
        body=decision,
        content_type="application/x-www-form-urlencoded",
    )
    assert status == "302 Found"
    code = parse_qs(urlsplit(headers["Location"]).query)["code"][0]
    body = (
        b'{"grant_type": "authorization_code", "client_id": "fake-client-id", "client_secret": '
        b'"fake-client-secret", "code": "'
        + code.encode()
        + b'", "redirect_uri": "'
        + REDIRECT_URI.encode()
        + b'"}'
    )
    status, _, _ = run_wsgi(
        app, "POST", "/fake-cloudsync/oauth/token", body=body, content_type="application/json"
    )

    assert status == "200 OK"
    assert fake.counters["code_exchanges"] == 1


# --------------------------------------------------------------------------- control endpoints


def test_the_control_endpoints_steer_a_fake_in_another_process(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    cloudsync_fake.add_user("usr_grace", None, "Grace Hopper")
    config = http.post(
        url + "/_fake/config",
        json={"token_lifetime": 2, "rotate_refresh_tokens": False, "current_user_id": "usr_grace"},
    )
    assert config.status_code == 200
    assert (cloudsync_fake.token_lifetime, cloudsync_fake.rotate_refresh_tokens) == (2, False)
    assert cloudsync_fake.current_user_id == "usr_grace"

    tokens = sign_in(http, url)
    assert tokens["expires_in"] == 2
    assert http.post(url + "/_fake/expire").json() == {"expired": 1}
    assert_invalid_token(call(http, url, dialect.ME_PATH, tokens["access_token"]))

    assert http.post(url + "/_fake/faults", json={"endpoint": "token", "kind": "server_error", "times": 2}).ok
    assert [refresh(http, url, tokens["refresh_token"]).status_code for _ in range(3)] == [500, 500, 200]

    assert http.post(url + "/_fake/revoke", json={"user_id": "usr_grace"}).json() == {"revoked": 1}
    assert_oauth_error(refresh(http, url, tokens["refresh_token"]), 400, dialect.INVALID_GRANT)

    counters = http.get(url + "/_fake/counters").json()
    assert counters["code_exchanges"] == 1
    assert counters["refresh_attempts"] == 4
    assert counters["refreshes_by_user"] == {"usr_grace": 1}

    assert http.post(url + "/_fake/reset").json() == {"ok": True}
    assert http.get(url + "/_fake/counters").json()["code_exchanges"] == 0


def test_users_can_be_added_through_the_control_endpoint(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    added = http.post(url + "/_fake/users", json={"id": "usr_soak_1", "email": None, "name": "Soak One"})
    refused = http.post(url + "/_fake/users", json={"id": 42})

    assert added.json() == {"id": "usr_soak_1"}
    assert "usr_soak_1" in [user.id for user in cloudsync_fake.users]
    assert_oauth_error(refused, 400, dialect.INVALID_REQUEST)


def test_the_control_endpoints_reveal_no_secret(http: requests.Session, url: str) -> None:
    sign_in(http, url)
    bodies = [http.get(url + "/_fake/counters").text, http.get(url + "/_fake/config").text]

    for body in bodies:
        assert CLIENT_SECRET not in body
        assert "at_test_" not in body
        assert "rt_test_" not in body


@pytest.mark.parametrize(
    "payload",
    [
        {"token_lifetime": -1},
        {"token_lifetime": "2"},
        {"current_user_id": "usr_nobody"},
        {"client_secret": "x"},
    ],
)
def test_a_bad_control_request_changes_nothing(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync, payload: dict[str, Any]
) -> None:
    response = http.post(url + "/_fake/config", json={"rotate_refresh_tokens": False, **payload})

    assert response.status_code == 400
    assert cloudsync_fake.rotate_refresh_tokens is True
    assert cloudsync_fake.client_secret == CLIENT_SECRET


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"endpoint": "token", "kind": "teapot"}, id="unknown kind"),
        pytest.param({"kind": "server_error"}, id="no endpoint"),
        pytest.param({"endpoint": "token"}, id="no kind"),
        pytest.param({"endpoint": "token", "kind": "rate_limited", "retry_after": 1.5}, id="odd retry_after"),
    ],
)
def test_a_bad_fault_request_is_refused(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync, payload: dict[str, Any]
) -> None:
    response = http.post(url + "/_fake/faults", json=payload)

    assert_oauth_error(response, 400, dialect.INVALID_REQUEST)
    assert token_request(http, url, grant_type="refresh_token", refresh_token="rt_test_x").status_code == 400
    assert cloudsync_fake.counters["faults_injected"] == 0
    assert http.delete(url + "/_fake/faults").json() == {"ok": True}


def test_a_fault_set_always_over_http_lasts_until_cleared(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    setting = {"endpoint": "me", "kind": "rate_limited", "always": True, "retry_after": 7}
    assert http.post(url + "/_fake/faults", json=setting).json() == {"ok": True}

    answers = [http.get(url + dialect.ME_PATH) for _ in range(3)]
    assert [(a.status_code, a.headers["Retry-After"]) for a in answers] == [(429, "7")] * 3
    http.delete(url + "/_fake/faults")
    assert http.get(url + dialect.ME_PATH).status_code == 401
    assert cloudsync_fake.counters["faults_injected"] == 3


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/_fake/reset", 405, "POST"),
        ("PUT", "/_fake/faults", 405, "POST, DELETE"),
        ("POST", "/_fake/counters", 405, "GET"),
        ("GET", "/_fake/nothing", 404, None),
    ],
)
def test_a_control_request_to_no_such_action_or_with_the_wrong_method_is_refused(
    http: requests.Session, url: str, method: str, path: str, status: int, allow: str | None
) -> None:
    response = http.request(method, url + path)

    assert response.status_code == status
    assert response.json() == {"error": "method_not_allowed" if allow else "not_found"}
    assert response.headers.get("Allow") == allow


def test_a_control_request_whose_body_is_not_a_json_object_is_refused(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    response = http.post(url + "/_fake/config", data=b"[1]", headers={"Content-Type": "application/json"})

    assert_oauth_error(response, 400, dialect.INVALID_REQUEST)
    assert cloudsync_fake.config["token_lifetime"] == 3600


def test_reset_over_http_keeps_config_and_users_unless_defaults_are_asked_for(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    cloudsync_fake.add_user("usr_grace")
    cloudsync_fake.token_lifetime = 5

    http.post(url + "/_fake/reset")
    assert (len(cloudsync_fake.users), cloudsync_fake.token_lifetime) == (2, 5)
    assert http.post(url + "/_fake/reset", json={"defaults": True}).json() == {"ok": True}
    assert (len(cloudsync_fake.users), cloudsync_fake.token_lifetime) == (1, 3600)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"id": ""}, id="empty id"),
        pytest.param({"id": "usr_x", "email": 1}, id="email not a string"),
        pytest.param({"id": "usr_x", "name": ["x"]}, id="name not a string"),
    ],
)
def test_a_bad_user_is_refused_by_the_control_endpoint(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync, payload: dict[str, Any]
) -> None:
    assert_oauth_error(http.post(url + "/_fake/users", json=payload), 400, dialect.INVALID_REQUEST)
    assert [user.id for user in cloudsync_fake.users] == ["usr_ada"]


def test_revoking_over_http_needs_a_user_id_that_is_a_string(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    tokens = cloudsync_fake.issue_tokens()

    assert_oauth_error(http.post(url + "/_fake/revoke", json={"user_id": 1}), 400, dialect.INVALID_REQUEST)
    assert call(http, url, dialect.ME_PATH, tokens["access_token"]).status_code == 200
    assert http.post(url + "/_fake/revoke").json() == {"revoked": 1}
    assert_invalid_token(call(http, url, dialect.ME_PATH, tokens["access_token"]))


# --------------------------------------------------------------------------- the fixtures


@pytest.mark.parametrize("run", ["one", "another"])
def test_the_fixture_gives_each_test_a_clean_fake(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync, run: str
) -> None:
    # Each run finds a clean fake and leaves a dirty one: whichever of the two runs second, in any
    # order and with any tests between them, finds what the first left behind wiped.
    assert (cloudsync_fake.token_lifetime, cloudsync_fake.rotate_refresh_tokens) == (3600, True)
    assert cloudsync_fake.timeout_delay == 3.0
    assert cloudsync_fake.users == [FakeUser("usr_ada", "ada@example.com", "Ada Lovelace")]
    assert cloudsync_fake.counters["code_exchanges"] == 0
    assert http.get(url + dialect.ME_PATH).status_code == 401  # no fault left behind

    sign_in(http, url)
    cloudsync_fake.issue_tokens()
    cloudsync_fake.token_lifetime = 1
    cloudsync_fake.rotate_refresh_tokens = False
    cloudsync_fake.timeout_delay = 0.1
    cloudsync_fake.add_user("usr_left_behind")
    cloudsync_fake.fail_always("api", "server_error")
    assert cloudsync_fake.counters["code_exchanges"] == 1


def test_issue_tokens_skips_the_browser_for_tests_not_about_signing_in(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    tokens = cloudsync_fake.issue_tokens(scope="workspaces:read")

    assert "refresh_token" not in tokens
    assert call(http, url, dialect.WORKSPACES_PATH, tokens["access_token"]).status_code == 200


def test_issue_tokens_refuses_an_unknown_scope_or_user(cloudsync_fake: FakeCloudSync) -> None:
    with pytest.raises(ValueError, match="unknown scopes"):
        cloudsync_fake.issue_tokens(scope="files:delete")
    with pytest.raises(ValueError, match="unknown fake user"):
        cloudsync_fake.issue_tokens("usr_nobody")

    assert cloudsync_fake.counters["code_exchanges"] == 0


def test_a_user_added_as_current_is_the_one_signed_in(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    cloudsync_fake.add_user("usr_grace", None, "Grace Hopper", current=True)
    with pytest.raises(ValueError, match="unknown fake user"):
        cloudsync_fake.current_user_id = "usr_nobody"

    assert consent(http, url).selected_user == "usr_grace"
    assert call(http, url, dialect.ME_PATH, sign_in(http, url)["access_token"]).json()["id"] == "usr_grace"


def test_pruning_dead_records_every_thousand_tokens_changes_no_answer(
    http: requests.Session, url: str, cloudsync_fake: FakeCloudSync
) -> None:
    # One record of each kind the pruning may drop, and one of each it must keep.
    expired = sign_in(http, url)["access_token"]
    cloudsync_fake.expire_access_tokens()
    live = sign_in(http, url)
    replayed_code = decide(http, url)["code"]
    stolen = exchange(http, url, replayed_code).json()
    assert exchange(http, url, replayed_code).status_code == 400  # revokes what it was exchanged for
    cloudsync_fake.code_lifetime = 0
    expired_code = decide(http, url)["code"]
    cloudsync_fake.code_lifetime = 60
    unused_code = decide(http, url)["code"]

    for _ in range(1000 - 3):  # the three sign-ins above issued the others
        cloudsync_fake.issue_tokens()

    assert_invalid_token(call(http, url, dialect.ME_PATH, expired))
    assert_invalid_token(call(http, url, dialect.ME_PATH, stolen["access_token"]))
    assert_oauth_error(refresh(http, url, stolen["refresh_token"]), 400, dialect.INVALID_GRANT)
    assert_oauth_error(exchange(http, url, replayed_code), 400, dialect.INVALID_GRANT)
    assert_oauth_error(exchange(http, url, expired_code), 400, dialect.INVALID_GRANT)
    assert call(http, url, dialect.ME_PATH, live["access_token"]).status_code == 200
    assert refresh(http, url, live["refresh_token"]).status_code == 200
    assert exchange(http, url, unused_code).status_code == 200
