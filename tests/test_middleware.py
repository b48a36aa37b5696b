"""``request.user.cloudsync``: what views and templates see, what it costs, and re-authorization."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.functional import SimpleLazyObject, empty
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from django_cloudsync import crypto, errors, signals
from django_cloudsync.middleware import CloudSyncMiddleware, UserWithCloudSync
from django_cloudsync.models import CloudSyncToken
from django_cloudsync.testing.flow import follow_consent
from tests import views
from tests.helpers import an_hour_later, query_of, signed_in

pytestmark = pytest.mark.django_db

User = get_user_model()

MIDDLEWARE_PATH = "django_cloudsync.middleware.CloudSyncMiddleware"


def queries_for(client: Client, path: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200
    return len(captured)


# What views and templates see.


def test_anonymous_user_has_none(client: Client) -> None:
    assert client.get("/cloudsync-state/").json() == {"is_none": True, "truthy": False}


def test_user_who_has_not_connected_cloudsync_has_none(client: Client, django_user_model: Any) -> None:
    client.force_login(django_user_model.objects.create_user("grace"))

    assert client.get("/cloudsync-state/").json() == {"is_none": True, "truthy": False}


def test_connected_user_has_a_client(client: Client, fake: Any) -> None:
    signed_in(client)

    assert client.get("/cloudsync-state/").json() == {"is_none": False, "truthy": True}


def test_template_if_user_cloudsync(client: Client, fake: Any, django_user_model: Any) -> None:
    assert client.get("/").content.startswith(b"not connected")
    client.force_login(django_user_model.objects.create_user("grace"))
    assert client.get("/").content.startswith(b"not connected")

    client.logout()
    signed_in(client)

    assert client.get("/").content.startswith(b"connected")


def test_view_calls_cloudsync_through_request_user(client: Client, fake: Any) -> None:
    signed_in(client)

    body = client.get("/workspaces/").json()

    assert body["connected"] is True
    assert [workspace["name"] for workspace in body["workspaces"]]
    assert fake.api_calls_by_path["/v1/workspaces"] == 1


# What it costs.


@pytest.mark.parametrize("path", ["/untouched/", "/touches-user/"])
def test_middleware_adds_no_query_and_no_http_call_to_views_that_do_not_use_it(
    client: Client, fake: Any, settings: Any, path: str
) -> None:
    signed_in(client)
    calls_before = fake.counters
    with_middleware = queries_for(client, path)

    settings.MIDDLEWARE = [entry for entry in settings.MIDDLEWARE if entry != MIDDLEWARE_PATH]
    without = Client()
    without.cookies = client.cookies  # the same signed-in session
    without_middleware = queries_for(without, path)

    assert with_middleware == without_middleware
    after = fake.counters
    assert (after["api_calls"], after["token_requests"]) == (
        calls_before["api_calls"],
        calls_before["token_requests"],
    )


@pytest.mark.parametrize("path", ["/untouched/", "/no-such-page/"])
def test_a_post_that_completes_no_sign_in_opens_no_transaction(client: Client, fake: Any, path: str) -> None:
    # The middleware looks a POST's view up (allauth's sign-in views run in one transaction);
    # a view that is not one of them, or no view at all (a 404), runs as it would without it.
    signed_in(client)

    with CaptureQueriesContext(connection) as captured:
        response = client.post(path)

    assert response.status_code in (200, 404, 405)
    assert not [query for query in captured if "SAVEPOINT" in query["sql"] or "BEGIN" in query["sql"]]


def test_view_that_never_reads_request_user_runs_no_query(client: Client, fake: Any) -> None:
    signed_in(client)

    assert queries_for(client, "/untouched/") == 0


def test_first_read_costs_one_query_and_the_second_none(
    client: Client, fake: Any, rf: Any, django_assert_num_queries: Any
) -> None:
    token = signed_in(client)
    user = User.objects.get()  # loaded, as it is once a view has looked at request.user
    calls_before = fake.counters["api_calls"]
    request = rf.get("/")
    request.user = user
    seen: dict[str, Any] = {}

    def view(request: Any) -> HttpResponse:  # the middleware's request: its user has cloudsync
        with django_assert_num_queries(1):
            seen["first"] = request.user.cloudsync
        with django_assert_num_queries(0):
            seen["second"] = request.user.cloudsync
        return HttpResponse()

    CloudSyncMiddleware(view)(request)

    assert seen["first"] is not None
    assert seen["second"] is seen["first"]
    assert seen["first"].scopes == token.scopes
    assert fake.counters["api_calls"] == calls_before  # building the client calls nobody


def test_reading_cloudsync_loads_a_lazy_user_once(
    client: Client, fake: Any, rf: Any, django_assert_num_queries: Any
) -> None:
    signed_in(client)
    user_id = User.objects.get().pk
    request = rf.get("/")
    request.user = SimpleLazyObject(lambda: User.objects.get(pk=user_id))
    seen: dict[str, Any] = {}

    def view(request: Any) -> HttpResponse:  # the middleware's request: its user has cloudsync
        with django_assert_num_queries(2):  # the user, then the token row
            seen["client"] = request.user.cloudsync
        with django_assert_num_queries(0):
            seen["name"] = request.user.get_username()
        return HttpResponse()

    with django_assert_num_queries(0):
        middleware = CloudSyncMiddleware(view)
    middleware(request)

    assert seen["client"] is not None
    assert seen["name"] == User.objects.get().get_username()


# An hour later: the stored token is refreshed once, before the call or after a 401.


def test_expired_token_is_refreshed_once_before_the_call(client: Client, fake: Any) -> None:
    token = signed_in(client)
    an_hour_later(token, fake)

    first = client.get("/workspaces/")
    second = client.get("/workspaces/")

    assert first.json()["connected"] is True
    assert second.json()["connected"] is True
    counters = fake.counters
    assert (counters["refresh_attempts"], counters["refreshes"]) == (1, 1)
    assert counters["api_calls_by_path"]["/v1/workspaces"] == 2  # no call was refused
    assert CloudSyncToken.objects.get().version == token.version + 1


def test_token_rejected_before_its_expiry_is_refreshed_once_and_the_call_retried(
    client: Client, fake: Any
) -> None:
    token = signed_in(client)
    fake.expire_access_tokens()  # CloudSync says no; the row still says the token is valid

    response = client.get("/workspaces/")

    assert response.json()["connected"] is True
    counters = fake.counters
    assert (counters["refresh_attempts"], counters["refreshes"]) == (1, 1)
    assert counters["api_calls_by_path"]["/v1/workspaces"] == 2  # the 401, then the retry
    assert CloudSyncToken.objects.get().version == token.version + 1


# Re-authorization: a dead refresh token sends the user through consent and back.


@pytest.mark.parametrize("noticed", ["on expiry", "on a 401"])
def test_dead_grant_redirects_through_consent_and_back_to_the_same_url(
    client: Client, fake: Any, noticed: str
) -> None:
    token = signed_in(client)
    user = User.objects.get()
    fake.revoke_tokens()
    if noticed == "on expiry":
        an_hour_later(token, fake)
    sent: list[dict[str, Any]] = []
    signals.reauthorization_required.connect(
        lambda **kwargs: sent.append(kwargs), weak=False, dispatch_uid="test_middleware"
    )
    try:
        response = client.get("/workspaces/?page=2")
    finally:
        signals.reauthorization_required.disconnect(dispatch_uid="test_middleware")

    assert response.status_code == 302
    location = response["Location"]
    assert urlsplit(location).path == reverse("cloudsync_consent")
    query = query_of(location)
    assert query["process"] == "connect"
    assert query["next"] == "/workspaces/?page=2"
    assert not CloudSyncToken.objects.exists()
    assert [(kw["user"], kw["account_id"]) for kw in sent] == [(user, "usr_ada")]

    back = follow_consent(client, location)

    assert back.status_code == 302
    assert back["Location"] == "/workspaces/?page=2"
    assert client.get(back["Location"]).json()["connected"] is True
    assert CloudSyncToken.objects.get().user == user


def test_consent_redirect_never_points_off_site(client: Client, fake: Any, rf: Any) -> None:
    signed_in(client)
    request = rf.get("/", PATH_INFO="//evil.example/")  # a path that reads as another host
    request.user = User.objects.get()

    response = CloudSyncMiddleware(lambda request: HttpResponse()).process_exception(
        request, errors.ReauthorizationRequired()
    )

    assert response is not None
    assert "evil.example" not in response["Location"]
    back = follow_consent(client, response["Location"])
    assert back.status_code == 302
    assert urlsplit(back["Location"]).netloc in ("", "testserver")


def test_dead_grant_after_a_logout_in_the_view_offers_a_sign_in(rf: Any) -> None:
    request = rf.get("/files/")
    request.user = AnonymousUser()

    response = CloudSyncMiddleware(lambda request: HttpResponse()).process_exception(
        request, errors.ReauthorizationRequired()
    )

    assert response is not None
    assert query_of(response["Location"]) == {"process": "login", "next": "/files/"}


def test_other_exceptions_are_left_to_django(rf: Any) -> None:
    request = rf.get("/")
    request.user = AnonymousUser()

    outcome = CloudSyncMiddleware(lambda request: HttpResponse()).process_exception(
        request, errors.ServerError()
    )

    assert outcome is None


# login() and logout() inside a request.


def test_after_logout_in_a_view_cloudsync_is_none(client: Client, fake: Any) -> None:
    signed_in(client)

    response = client.get("/logout-then-cloudsync/")

    assert response.json() == {"before_is_none": False, "after_is_none": True}


def test_after_login_in_a_view_cloudsync_is_the_new_users(client: Client, fake: Any) -> None:
    signed_in(client)
    username = User.objects.get().get_username()
    client.logout()

    response = client.get("/login-then-cloudsync/", {"username": username})

    assert response.json() == {"before_is_none": True, "after_account": "usr_ada"}


def test_logging_in_another_user_drops_the_previous_users_client(
    client: Client, fake: Any, django_user_model: Any
) -> None:
    signed_in(client)
    django_user_model.objects.create_user("grace")

    response = client.get("/login-then-cloudsync/", {"username": "grace"})

    assert response.json() == {"before_is_none": False, "after_account": None}


def test_reloading_request_user_drops_the_cached_client(client: Client, fake: Any, rf: Any) -> None:
    # allauth's headless API reloads the user this way after it swaps in the app's session.
    signed_in(client)
    ada = User.objects.get()
    current: dict[str, Any] = {"user": AnonymousUser()}
    request = rf.get("/")
    request.user = SimpleLazyObject(lambda: current["user"])
    seen: list[Any] = []

    def view(request: Any) -> HttpResponse:  # the middleware's request: its user has cloudsync
        seen.append(request.user.cloudsync)
        current["user"] = ada
        request.user._wrapped = empty
        seen.append(request.user.cloudsync)
        seen.append(request.user.get_username())
        return HttpResponse()

    CloudSyncMiddleware(view)(request)

    assert seen[0] is None
    assert seen[1] is not None
    assert seen[2] == ada.get_username()


class OtherLazyUser(SimpleLazyObject):  # type: ignore[type-arg]  # generic only in the stubs
    """A lazy user of another library's own class (allauth headless reloads one like this)."""


@pytest.mark.parametrize("loaded", [False, True], ids=["not loaded", "loaded"])
def test_another_librarys_lazy_user_is_proxied_sharing_its_loader(
    client: Client, fake: Any, rf: Any, loaded: bool
) -> None:
    signed_in(client)
    ada = User.objects.get()
    request = rf.get("/")
    request.user = lazy = OtherLazyUser(lambda: ada)
    if loaded:
        lazy.pk  # noqa: B018 -- loads it

    CloudSyncMiddleware(lambda request: HttpResponse())(request)

    assert type(request.user) is UserWithCloudSync
    assert (request.user._wrapped is ada) is loaded  # a loaded user is not loaded twice
    assert request.user.pk == ada.pk
    assert request.user.cloudsync is not None


def test_setting_an_attribute_on_the_user_keeps_the_cached_client(client: Client, fake: Any, rf: Any) -> None:
    signed_in(client)
    request = rf.get("/")
    request.user = User.objects.get()
    CloudSyncMiddleware(lambda request: HttpResponse())(request)
    cached = request.user.cloudsync

    request.user.marker = "set by a view"

    assert request.user.marker == "set by a view"
    with CaptureQueriesContext(connection) as captured:
        assert request.user.cloudsync is cached
    assert len(captured) == 0


def test_auser_wraps_a_user_an_api_framework_set_after_the_middleware(rf: Any) -> None:
    request = rf.get("/")
    request.user = AnonymousUser()

    async def auser() -> Any:  # Django's, as AuthenticationMiddleware sets it
        return request.user

    request.auser = auser
    CloudSyncMiddleware(lambda request: HttpResponse())(request)
    api_user = AnonymousUser()
    request.user = SimpleLazyObject(lambda: api_user)  # e.g. DRF's authentication, plain Django's lazy user

    user = async_to_sync(request.auser)()

    assert type(user) is UserWithCloudSync
    assert user._wrapped is api_user  # loaded (in a thread: it has no async loader of its own)
    assert not user.is_authenticated


def test_request_user_is_still_the_user(client: Client, fake: Any, rf: Any) -> None:
    signed_in(client)
    user = User.objects.get()
    request = rf.get("/")
    request.user = user
    seen: dict[str, Any] = {}

    def view(request: HttpRequest) -> HttpResponse:
        seen["user"] = request.user
        return HttpResponse()

    CloudSyncMiddleware(view)(request)

    assert isinstance(seen["user"], UserWithCloudSync)
    assert isinstance(seen["user"], User)
    assert seen["user"] == user
    assert seen["user"].pk == user.pk
    assert isinstance(request, HttpRequest)


def test_works_under_asgi_too(client: Client, fake: Any) -> None:
    signed_in(client)
    browser = AsyncClient()
    browser.cookies = client.cookies

    async def get(path: str) -> Any:
        return await browser.get(path)  # Django 4.2's AsyncClient.get only returns a coroutine

    response = async_to_sync(get)("/cloudsync-state/")
    workspaces = async_to_sync(get)("/workspaces/")

    assert response.json() == {"is_none": False, "truthy": True}
    assert workspaces.json()["connected"] is True


@pytest.mark.parametrize("debug", [False, True], ids=["DEBUG off", "DEBUG on"])
def test_error_pages_hide_sensitive_variables_even_with_debug_on(
    client: Client, settings: Any, debug: bool
) -> None:
    settings.DEBUG = debug
    client.raise_request_exception = False

    response = client.get("/fails-holding-a-secret/")

    assert response.status_code == 500
    reporter = ExceptionReporter(response.wsgi_request, *response.exc_info)  # type: ignore[attr-defined]  # set by the test client, missing from the stubs
    report = reporter.get_traceback_text()
    assert "failed after reading a token" in report  # a real report of this failure
    secret = "".join(views.SENSITIVE_VALUE_PARTS)
    assert secret not in report + reporter.get_traceback_html()
    assert secret not in response.content.decode()


def test_a_reporter_filter_the_site_set_on_the_request_is_kept(rf: Any, settings: Any) -> None:
    settings.DEBUG = True  # when the middleware would otherwise set its own
    request = rf.get("/")
    request.user = AnonymousUser()
    site_filter = SafeExceptionReporterFilter()
    request.exception_reporter_filter = site_filter

    CloudSyncMiddleware(lambda request: HttpResponse())(request)

    assert request.exception_reporter_filter is site_filter


def test_the_async_path_hides_sensitive_variables_with_debug_on_too(rf: Any, settings: Any) -> None:
    settings.DEBUG = True
    request = rf.get("/")
    request.user = AnonymousUser()

    async def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    middleware = CloudSyncMiddleware(view)
    assert async_to_sync(middleware)(request).status_code == 200

    # Django's filter, active even though DEBUG is on: @sensitive_variables hold on a 500 page.
    assert isinstance(request.exception_reporter_filter, SafeExceptionReporterFilter)
    assert request.exception_reporter_filter.is_active(request)


def test_middleware_before_authentication_middleware_says_so(rf: Any) -> None:
    middleware = CloudSyncMiddleware(lambda request: HttpResponse())

    with pytest.raises(ImproperlyConfigured, match=r"after .*AuthenticationMiddleware"):
        middleware(rf.get("/"))


# Stored tokens that can no longer be decrypted (their key left CLOUDSYNC_ENCRYPTION_KEYS).


@pytest.fixture
def undecryptable(client: Client, fake: Any, settings: Any) -> CloudSyncToken:
    token = signed_in(client)
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [crypto.generate_key()]
    return token


@pytest.mark.parametrize("path", ["/untouched/", "/touches-user/", "/cloudsync-state/"])
def test_undecryptable_tokens_do_not_break_pages_that_do_not_call_cloudsync(
    client: Client, undecryptable: CloudSyncToken, path: str
) -> None:
    assert client.get(path).status_code == 200


def test_undecryptable_tokens_still_count_as_connected(client: Client, undecryptable: CloudSyncToken) -> None:
    response = client.get("/")

    assert response.status_code == 200
    assert response.content.startswith(b"connected")


def test_view_calling_cloudsync_with_undecryptable_tokens_gets_a_typed_error(
    client: Client, fake: Any, undecryptable: CloudSyncToken
) -> None:
    calls_before = fake.counters["api_calls"]

    with pytest.raises(errors.UndecryptableToken) as raised:
        client.get("/workspaces/")

    assert isinstance(raised.value, errors.CloudSyncError)
    assert fake.counters["api_calls"] == calls_before  # nothing was sent
    assert "at_test_" not in str(raised.value) + repr(raised.value)
    assert CloudSyncToken.objects.get().pk == undecryptable.pk  # kept: the key may come back


def test_signing_in_again_replaces_undecryptable_tokens(
    client: Client, undecryptable: CloudSyncToken
) -> None:
    client.logout()

    signed_in(client)

    assert client.get("/workspaces/").json()["connected"] is True
