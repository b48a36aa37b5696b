"""django_cloudsync.responses: a redirect for a page, JSON for an API client, chosen in one place.

The middleware and ``@cloudsync_required`` on the test site's plain Django views (``tests/views.py``),
allauth headless's provider redirect with the scopes an SPA asks for, and the error table.
"""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from allauth.headless.constants import Client as HeadlessClient
from django.test import Client, RequestFactory
from django.urls import include, path

from django_cloudsync import errors, responses
from django_cloudsync.models import CloudSyncToken
from django_cloudsync.testing.flow import consent
from tests.helpers import RequestHeaders, error_of, signed_in

pytestmark = pytest.mark.django_db

JSON: RequestHeaders = {"HTTP_ACCEPT": "application/json"}
REDIRECT_URL = "/_allauth/browser/v1/auth/provider/redirect"


# Who wants JSON.


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/json", True),
        ("application/json, text/html", True),
        ("text/html, application/json", False),
        ("text/html;q=0.5, application/json", True),
        ("application/json;q=0.4, text/html;q=0.9", False),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),  # a navigation
        ("*/*", False),  # fetch()'s default
        ("", False),
        ("application/json;q=0", False),
        ("application/json;q=nan", False),
        ("application/json;q=2", False),
        ("application/json;q=oops", False),
        ("text/plain, " * 40 + "application/json", False),  # past the ranges read
        ("APPLICATION/JSON", True),
        ("application/json; charset=utf-8", True),  # a parameter that is not q
    ],
)
def test_prefers_json_reads_the_accept_header(accept: str, expected: bool) -> None:
    request = RequestFactory().get("/", HTTP_ACCEPT=accept)

    assert responses.prefers_json(request) is expected


@pytest.mark.parametrize(
    ("headers", "client"),
    [
        ({}, None),
        ({"HTTP_ACCEPT": "application/json"}, "browser"),
        ({"HTTP_X_SESSION_TOKEN": "anything"}, "app"),
        ({"HTTP_AUTHORIZATION": "Bearer anything"}, "app"),
        ({"HTTP_AUTHORIZATION": "Token anything", "HTTP_ACCEPT": "application/json"}, "app"),
    ],
)
def test_the_client_is_read_from_the_request(headers: RequestHeaders, client: str | None) -> None:
    assert responses.headless_client(RequestFactory().get("/", **headers)) == client


@pytest.mark.parametrize("marked", [HeadlessClient.APP, HeadlessClient.BROWSER], ids=["app", "browser"])
def test_allauth_headless_marks_its_own_requests_with_their_client(marked: HeadlessClient) -> None:
    request = RequestFactory().get("/")  # no header: only allauth's mark says who asks
    request.allauth = SimpleNamespace(headless=SimpleNamespace(client=marked))  # type: ignore[attr-defined]  # as its views set it

    assert responses.headless_client(request) == marked.value


# How the client connects CloudSync (data.flows), by what the site serves.

#: A site without allauth headless: its URLs, as ROOT_URLCONF.
urlpatterns = [path("accounts/", include("allauth.urls"))]


def flow_ids(request: Any) -> list[str]:
    return [flow["id"] for flow in responses.connect_flows(request, ["workspaces:write"])]


def test_without_allauth_headless_a_json_client_is_sent_to_allauths_login_url(settings: Any) -> None:
    settings.ROOT_URLCONF = __name__

    flows = responses.connect_flows(
        RequestFactory().get("/", HTTP_ACCEPT="application/json"), ["workspaces:write"]
    )

    assert [(flow["id"], flow["method"]) for flow in flows] == [("redirect", "GET")]
    query = parse_qs(urlsplit(flows[0]["url"]).query)
    assert query == {"process": ["connect"], "scope": ["workspaces:write"]}


@pytest.mark.parametrize(
    ("provider_settings", "ids"),
    [
        ({}, ["cloudsync_app_code", "provider_token"]),
        ({"APP_REDIRECT_URIS": []}, ["provider_token"]),
        ({"TOKEN_AUTHENTICATION": False}, ["cloudsync_app_code"]),
        # An app the site lets sign in neither way is offered what a browser gets.
        ({"APP_REDIRECT_URIS": [], "TOKEN_AUTHENTICATION": False}, ["provider_redirect"]),
    ],
)
def test_an_app_is_offered_the_flows_the_site_turned_on(
    fake: Any, settings: Any, provider_settings: dict[str, Any], ids: list[str]
) -> None:
    settings.SOCIALACCOUNT_PROVIDERS["cloudsync"].update(provider_settings)
    app = RequestFactory().get("/", HTTP_X_SESSION_TOKEN="anything")

    assert flow_ids(app) == ids


# @cloudsync_required and the middleware answer JSON to those who want it, and redirect pages.


def test_an_anonymous_json_request_gets_401_with_the_sign_in_flow(client: Client, fake: Any) -> None:
    body = error_of(client.get("/connected-only/", **JSON), 401)

    assert body["errors"][0]["code"] == "cloudsync_login_required"
    assert body["data"]["flows"][0]["id"] == "provider_redirect"
    assert body["data"]["flows"][0]["process"] == "login"


def test_a_json_request_without_the_scope_gets_403_not_a_redirect(client: Client, fake: Any) -> None:
    signed_in(client)

    body = error_of(client.post("/needs-write/", **JSON), 403)

    assert body["errors"][0]["code"] == "cloudsync_scope_required"
    assert body["data"]["scopes"] == ["workspaces:write"]
    assert body["data"]["flows"][0]["url"] == REDIRECT_URL + "?scope=workspaces%3Awrite"


def test_pages_keep_their_redirects(client: Client, fake: Any) -> None:
    assert client.get("/connected-only/").status_code == 302
    signed_in(client)

    response = client.post("/needs-write/", HTTP_ACCEPT="text/html,*/*;q=0.8")

    assert response.status_code == 302
    assert "scope=workspaces%3Awrite" in response["Location"]


@pytest.mark.parametrize(
    ("url", "middleware"),
    [("/workspaces/", True), ("/needs-write/", False)],
    ids=["the middleware", "the decorator alone"],
)
def test_a_dead_grant_on_an_api_request_answers_json(
    client: Client, fake: Any, settings: Any, url: str, middleware: bool
) -> None:
    if not middleware:
        settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if not m.startswith("django_cloudsync")]
    signed_in(client)
    # /needs-write/ wants workspaces:write granted before it calls CloudSync.
    CloudSyncToken.objects.update(scope="workspaces:read workspaces:write offline_access")
    fake.revoke_tokens()
    fake.expire_access_tokens()

    response = client.get(url, HTTP_X_SESSION_TOKEN="an-app")

    body = error_of(response, 403)
    assert body["errors"][0]["code"] == "cloudsync_reauthorization_required"
    assert body["data"]["flows"][0]["id"] == "cloudsync_app_code"
    assert not CloudSyncToken.objects.exists()


def test_other_cloudsync_errors_answer_json_through_the_middleware(
    client: Client, fake: Any, settings: Any
) -> None:
    settings.CLOUDSYNC_MAX_RETRIES = 0
    signed_in(client)
    fake.fail_next("workspaces", "rate_limited", retry_after=99)

    response = client.get("/workspaces/", **JSON)

    assert error_of(response, 429)["errors"][0]["code"] == "cloudsync_rate_limited"
    assert response["Retry-After"] == "99"


def test_other_cloudsync_errors_on_a_page_are_left_to_django(
    client: Client, fake: Any, settings: Any
) -> None:
    settings.CLOUDSYNC_MAX_RETRIES = 0
    signed_in(client)
    fake.fail_next("workspaces", "server_error")

    with pytest.raises(errors.ServerError):
        client.get("/workspaces/")


# allauth headless's provider redirect takes the scopes an SPA was told to ask for.


def test_the_spas_connect_asks_for_the_scope_on_top_of_the_grant(client: Client, fake: Any) -> None:
    signed_in(client)

    response = client.post(
        REDIRECT_URL + "?scope=workspaces%3Awrite",
        {"provider": "cloudsync", "process": "connect", "callback_url": "/spa/"},
    )

    assert response.status_code == 302
    scope = parse_qs(urlsplit(response["Location"]).query)["scope"][0].split()
    assert sorted(scope) == ["offline_access", "workspaces:read", "workspaces:write"]
    back = client.get(consent(response["Location"]))
    assert back.status_code == 302
    assert back["Location"] == "/spa/"
    assert "workspaces:write" in CloudSyncToken.objects.get().scopes


@pytest.mark.parametrize(
    "scope", ["workspaces:write files:read", 'a"b', "a\\b", "é", "x" * 65, ",".join(["s"] * 17), "\x00"]
)
def test_a_scope_parameter_that_is_not_scope_names_is_a_400(client: Client, fake: Any, scope: str) -> None:
    signed_in(client)

    response = client.post(
        REDIRECT_URL + "?" + "scope=" + scope,
        {"provider": "cloudsync", "process": "connect", "callback_url": "/spa/"},
    )

    body = error_of(response, 400)
    assert body["errors"][0] == {
        "code": "cloudsync_invalid_scope",
        "message": "Scopes are names, separated by commas.",
        "param": "scope",
    }


# The table.


def test_a_code_that_is_not_in_the_table_has_no_row() -> None:
    assert responses.error_row(responses.NOT_CONNECTED).status == 403
    with pytest.raises(LookupError):
        responses.error_row("cloudsync_no_such_code")


def test_every_error_class_has_a_row_and_subclasses_come_first() -> None:
    kinds = [kind for kind, _ in responses.ERRORS if isinstance(kind, type)]
    for position, kind in enumerate(kinds):
        assert not any(issubclass(kind, earlier) for earlier in kinds[:position]), kind
    for name in errors.__all__:
        error = getattr(errors, name)
        assert responses.error_row(error()).code.startswith("cloudsync_")
    codes = [row.code for _, row in responses.ERRORS]
    assert len(codes) == len(set(codes))


def test_no_answer_carries_an_errors_text() -> None:
    exc = errors.ServerError("at_test_secret leaked", description="rt_test_secret")
    answer = responses.error_answer(RequestFactory().get("/", **JSON), exc)

    assert "secret" not in str(answer.body())


# Nothing is imported unless the site uses it.


def test_the_package_imports_neither_framework() -> None:
    code = (
        "import django, sys; from django.conf import settings;"
        "settings.configure(INSTALLED_APPS=['django.contrib.contenttypes', 'django.contrib.auth',"
        " 'django.contrib.sessions', 'allauth', 'allauth.account', 'allauth.socialaccount',"
        " 'django_cloudsync'],"
        " MIDDLEWARE=['allauth.account.middleware.AccountMiddleware']);"
        "django.setup();"
        "import django_cloudsync, django_cloudsync.contrib, django_cloudsync.responses,"
        " django_cloudsync.middleware, django_cloudsync.decorators;"
        "print(sorted(m for m in ('rest_framework', 'ninja') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert result.stdout.strip() == "[]"
