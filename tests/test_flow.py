"""The sign-in helpers of ``django_cloudsync.testing.flow``: what they say when a step does not go
as a browser's would. (Their successful runs are the rest of the suite's sign-ins.)"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from django_cloudsync import dialect
from django_cloudsync.testing.flow import app_authorization, consent, follow_consent, start

pytestmark = pytest.mark.django_db

APP_REDIRECT_URI = "com.example.cloudsync:/oauth2redirect"


def test_start_says_so_when_the_login_view_does_not_redirect(fake: Any) -> None:
    # A browser would have the CSRF token of allauth's page; this client posts without one.
    with pytest.raises(AssertionError, match="The login view answered 403, not a redirect"):
        start(Client(enforce_csrf_checks=True))

    assert fake.counters["authorize"] == 0


def test_follow_consent_says_so_when_there_is_no_continue_page(client: Any, fake: Any) -> None:
    with pytest.raises(AssertionError, match="Continue page at /nowhere/, got 404"):
        follow_consent(client, "/nowhere/")

    assert fake.counters["authorize"] == 0


def test_consent_says_so_when_cloudsync_shows_no_consent_page(cloudsync_server: Any, fake: Any) -> None:
    refused = f"{cloudsync_server.url}{dialect.AUTHORIZE_PATH}?client_id=someone-else"

    with pytest.raises(AssertionError, match="The consent page answered 400"):
        consent(refused)
    with pytest.raises(AssertionError, match="The consent page has no form"):
        consent(f"{cloudsync_server.url}/_fake/config")


def test_consent_says_so_when_the_form_is_not_answered_with_a_redirect(client: Any, fake: Any) -> None:
    with pytest.raises(AssertionError, match="The consent form answered 400, not a redirect"):
        consent(start(client), user_id="usr_nobody")

    assert fake.counters["authorize"] == 1
    assert fake.counters["code_exchanges"] == 0


def test_app_authorization_takes_another_client_id(fake: Any) -> None:
    fake.add_client("mobile-app", "mobile-secret")

    authorized = app_authorization(APP_REDIRECT_URI, client_id="mobile-app")

    assert authorized.token("mobile-app")["client_id"] == "mobile-app"
    assert fake.counters["authorize"] == 1
    assert "mobile-secret" not in repr(authorized)


def test_consent_returns_where_cloudsync_sends_a_request_it_refuses_at_once(client: Any, fake: Any) -> None:
    # The site asks for a scope CloudSync does not know: no consent page, straight back with an error.
    authorize_url = start(client, scope="files:delete")

    location = consent(authorize_url)

    assert location.startswith("http://testserver/accounts/cloudsync/login/callback/?")
    assert parse_qs(urlsplit(location).query)["error"] == ["invalid_scope"]
    assert fake.counters["authorize"] == 0


def test_app_authorization_says_so_when_cloudsync_sends_no_code(fake: Any) -> None:
    with pytest.raises(AssertionError, match="CloudSync answered the app without a code: invalid_scope"):
        app_authorization(APP_REDIRECT_URI, scope="files:delete")
