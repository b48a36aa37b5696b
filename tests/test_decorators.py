"""``@cloudsync_required``: sign in, connect, widen the grant, then run the view."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import reverse

from django_cloudsync import errors
from django_cloudsync.decorators import cloudsync_required
from django_cloudsync.models import CloudSyncToken
from django_cloudsync.testing.flow import follow_consent
from tests.helpers import query_of, signed_in
from tests.views import ConnectedRequest

pytestmark = pytest.mark.django_db

User = get_user_model()

MIDDLEWARE_PATH = "django_cloudsync.middleware.CloudSyncMiddleware"


@pytest.fixture(params=["with the middleware", "without the middleware"])
def middleware(request: pytest.FixtureRequest, settings: Any) -> str:
    """Every behaviour of the decorator holds with and without CloudSyncMiddleware."""
    if request.param == "without the middleware":
        settings.MIDDLEWARE = [entry for entry in settings.MIDDLEWARE if entry != MIDDLEWARE_PATH]
    return str(request.param)


def assert_consent_redirect(response: Any, *, next_url: str, scope: str | None) -> None:
    """A redirect to the site's consent page, which connects, asks for ``scope``, and comes back."""
    assert response.status_code == 302
    location = response["Location"]
    assert urlsplit(location).path == reverse("cloudsync_consent")
    query = query_of(location)
    assert query["process"] == "connect"
    assert query["next"] == next_url
    assert query.get("scope") == scope


def connected_with(scopes: list[str]) -> Any:
    """A stand-in for a view's ``request.user``: signed in, with a stored grant of ``scopes``."""
    user = User.objects.create_user("grace")
    CloudSyncToken.objects.create(
        social_account=user.socialaccount_set.create(provider="cloudsync", uid="usr_grace"),
        account_id="usr_grace",
        scope=" ".join(scopes),
        access_token_ciphertext="unused",
    )
    return user


def call(view: Any, rf: Any, user: Any, path: str = "/somewhere/?x=1") -> HttpResponse:
    request = rf.get(path)
    request.user = user
    response: HttpResponse = view(request)
    return response


def ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ran")


# Anonymous users sign in first.


@pytest.mark.parametrize("path", ["/connected-only/", "/needs-write/"])
def test_anonymous_user_is_sent_to_sign_in_with_next(
    client: Client, settings: Any, middleware: str, path: str
) -> None:
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"] == f"{settings.LOGIN_URL}?next={path}"


# Users without CloudSync, or without a scope, go through consent for exactly what is missing.


def test_user_without_cloudsync_is_sent_to_connect_it(
    client: Client, django_user_model: Any, middleware: str
) -> None:
    client.force_login(django_user_model.objects.create_user("grace"))

    assert_consent_redirect(client.get("/connected-only/"), next_url="/connected-only/", scope=None)


def test_user_without_cloudsync_is_asked_for_the_views_scopes(
    client: Client, django_user_model: Any, middleware: str
) -> None:
    client.force_login(django_user_model.objects.create_user("grace"))

    assert_consent_redirect(client.get("/needs-write/"), next_url="/needs-write/", scope="workspaces:write")


def test_grant_without_a_scope_asks_for_exactly_the_missing_scope(
    client: Client, fake: Any, middleware: str
) -> None:
    signed_in(client)  # workspaces:read offline_access

    assert_consent_redirect(client.get("/needs-write/"), next_url="/needs-write/", scope="workspaces:write")


def test_only_missing_scopes_are_asked_for(rf: Any) -> None:
    view = cloudsync_required(scopes=["workspaces:read", "files:read", "workspaces:write"])(ok)
    user = connected_with(["workspaces:read", "offline_access"])

    response = call(view, rf, user)

    assert_consent_redirect(response, next_url="/somewhere/?x=1", scope="files:read,workspaces:write")


def test_scopes_may_be_given_as_one_string(rf: Any) -> None:
    view = cloudsync_required(scopes="files:read workspaces:write")(ok)
    user = connected_with(["workspaces:read"])

    response = call(view, rf, user)

    assert_consent_redirect(response, next_url="/somewhere/?x=1", scope="files:read,workspaces:write")


@pytest.mark.parametrize("scopes", [[""], [None], [3], ["  "], ["files:read files:write"], ["a,b"]])
def test_scopes_that_are_not_scope_names_are_refused_at_decoration(scopes: list[Any]) -> None:
    with pytest.raises(TypeError):
        cloudsync_required(scopes=scopes)


def test_grant_with_every_scope_runs_the_view_without_consent(
    client: Client, fake: Any, middleware: str
) -> None:
    signed_in(client, scope="workspaces:write")

    response = client.get("/needs-write/")

    assert response.status_code == 201
    assert response.json()["name"] == "New"
    assert fake.counters["api_calls_by_path"]["/v1/workspaces"] == 1  # the view ran, once


def test_following_the_consent_redirect_comes_back_and_runs_the_view(
    client: Client, fake: Any, middleware: str
) -> None:
    signed_in(client)
    redirect = client.get("/needs-write/")

    back = follow_consent(client, redirect["Location"])

    assert back.status_code == 302
    assert back["Location"] == "/needs-write/"
    token = CloudSyncToken.objects.get()
    assert "workspaces:write" in token.scopes
    response = client.get(back["Location"])
    assert response.status_code == 201
    assert response.json()["name"] == "New"
    assert fake.last_authorize_params["scope"].split() == [
        "workspaces:read",
        "offline_access",
        "workspaces:write",
    ]


def test_user_without_cloudsync_connects_it_and_comes_back(
    client: Client, fake: Any, django_user_model: Any, middleware: str
) -> None:
    grace = django_user_model.objects.create_user("grace")
    client.force_login(grace)
    redirect = client.get("/connected-only/")

    back = follow_consent(client, redirect["Location"])

    assert back["Location"] == "/connected-only/"
    assert CloudSyncToken.objects.get().user == grace
    assert client.get("/connected-only/").json() == {"scopes": ["workspaces:read", "offline_access"]}


# Re-authorization and redirects that stay on the site.


def test_dead_grant_in_a_decorated_view_goes_through_consent(rf: Any) -> None:
    def view(request: HttpRequest) -> HttpResponse:
        raise errors.ReauthorizationRequired(scopes=["workspaces:read", "offline_access"])

    user = connected_with(["workspaces:read", "offline_access"])

    response = call(cloudsync_required(view), rf, user, "/reports/")

    assert_consent_redirect(response, next_url="/reports/", scope="workspaces:read,offline_access")


def test_other_cloudsync_errors_in_a_decorated_page_are_left_to_django(rf: Any) -> None:
    failure = errors.ServerError(status=503)

    def view(request: HttpRequest) -> HttpResponse:
        raise failure

    user = connected_with(["workspaces:read"])

    with pytest.raises(errors.ServerError) as caught:
        call(cloudsync_required(view), rf, user, "/reports/")
    assert caught.value is failure  # the view's own error, for Django's 500 handling


def test_decorated_view_gets_request_user_cloudsync_without_the_middleware(rf: Any) -> None:
    seen: dict[str, Any] = {}

    @cloudsync_required
    def view(request: ConnectedRequest) -> HttpResponse:
        seen["scopes"] = request.user.cloudsync.scopes
        return HttpResponse()

    call(view, rf, connected_with(["workspaces:read"]))

    assert seen["scopes"] == ["workspaces:read"]


@pytest.mark.parametrize("user", ["anonymous", "not connected"])
def test_redirects_never_carry_an_off_site_next(rf: Any, django_user_model: Any, user: str) -> None:
    view = cloudsync_required(scopes=["workspaces:write"])(ok)
    who = AnonymousUser() if user == "anonymous" else django_user_model.objects.create_user("grace")
    request = rf.get("/", PATH_INFO="//evil.example/")  # a path that reads as another host
    request.user = who

    response = view(request)

    assert response.status_code == 302
    assert "evil.example" not in response["Location"]
    assert urlsplit(response["Location"]).netloc == ""


def test_decorator_keeps_the_views_name_and_docstring() -> None:
    def my_view(request: HttpRequest) -> HttpResponse:
        """Shows things."""
        return HttpResponse()

    decorated = cloudsync_required(scopes=["files:read"])(my_view)

    assert (decorated.__name__, decorated.__doc__) == ("my_view", "Shows things.")
