"""The site's own consent page before CloudSync's, for a signed-in user asked for more scopes:
plain words per scope, a CSRF-protected POST, Cancel back to where the user was, and the
messages afterwards. Over real HTTP against the fake CloudSync."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.urls import reverse

from django_cloudsync import consent, dialect
from django_cloudsync.models import CloudSyncToken
from django_cloudsync.testing.flow import consent as press_on_cloudsync
from django_cloudsync.testing.flow import sign_in
from tests.helpers import query_of
from tests.test_templatetags import forms_in

pytestmark = pytest.mark.django_db

NEEDS_WRITE = "/needs-write/"  # @cloudsync_required(scopes=["workspaces:write"])
ALLAUTH_CONNECTED = "The third-party account has been connected."


def messages_of(browser: Client) -> list[str]:
    return list(browser.get("/messages/").json()["messages"])


@pytest.fixture
def browser(fake: Any) -> Client:
    """A signed-in browser whose grant has the site's SCOPE (workspaces:read) only."""
    client = Client()
    assert sign_in(client).status_code == 302
    messages_of(client)  # the sign-in's own messages
    client.handler.enforce_csrf_checks = True  # from here on, as a browser meets the CSRF check
    return client


def consent_page(browser: Client, *, referer: str = "/") -> tuple[str, Any]:
    """Follow the decorated view to the consent page, from ``referer``; (its URL, its response)."""
    redirect = browser.get(NEEDS_WRITE, HTTP_REFERER=f"http://testserver{referer}")
    assert redirect.status_code == 302
    location = redirect["Location"]
    return location, browser.get(location)


def test_a_view_needing_more_scopes_sends_a_signed_in_user_to_the_sites_consent_page(browser: Client) -> None:
    location, page = consent_page(browser)

    assert urlsplit(location).path == reverse("cloudsync_consent") == "/accounts/cloudsync/consent/"
    assert query_of(location) == {
        "process": "connect",
        "scope": "workspaces:write",
        "next": NEEDS_WRITE,
        "back": "/",
    }
    assert page.status_code == 200
    html = page.content.decode()
    assert "Allow more CloudSync access" in html
    assert "Create and manage workspaces" in html
    assert "workspaces:read" not in html  # already granted: not "added"
    (form,) = forms_in(html)
    assert form.method == "post"
    assert form.action == location
    assert len(form.hidden["csrfmiddlewaretoken"]) >= 32
    assert form.buttons == [("submit", "Continue to CloudSync")]
    assert '<a class="cloudsync-consent__cancel" href="/">Cancel</a>' in html


def test_continuing_asks_cloudsync_for_the_new_scope_and_says_access_was_updated(
    browser: Client, fake: Any
) -> None:
    _, page = consent_page(browser)
    (form,) = forms_in(page.content)

    authorize = browser.post(form.action, form.hidden)

    assert authorize.status_code == 302
    assert query_of(authorize["Location"])["scope"] == "workspaces:read offline_access workspaces:write"
    back = browser.get(press_on_cloudsync(authorize["Location"]))
    assert back.status_code == 302
    assert back["Location"] == NEEDS_WRITE
    assert messages_of(browser) == ["CloudSync access was updated."]
    assert CloudSyncToken.objects.get().scopes == ["workspaces:read", "offline_access", "workspaces:write"]
    assert browser.get(NEEDS_WRITE).status_code == 201  # the view runs now


def test_the_consent_form_is_refused_without_its_csrf_token(browser: Client) -> None:
    location, _ = consent_page(browser)

    response = browser.post(location, {})

    assert response.status_code == 403
    assert consent.SESSION_KEY not in browser.session


def test_refusing_on_cloudsync_says_the_permission_was_not_granted_and_returns_where_the_user_was(
    browser: Client,
) -> None:
    _, page = consent_page(browser, referer="/workspaces/")
    (form,) = forms_in(page.content)
    authorize = browser.post(form.action, form.hidden)

    back = browser.get(press_on_cloudsync(authorize["Location"], decision="deny"))

    assert back.status_code == 302
    assert back["Location"] == "/workspaces/"
    messages = messages_of(browser)
    assert messages == ["The permission was not granted: your CloudSync access is unchanged."]
    assert CloudSyncToken.objects.get().scopes == ["workspaces:read", "offline_access"]
    assert browser.get("/").content.startswith(b"connected")  # still signed in and connected


def test_a_plain_connect_refused_by_a_signed_in_user_does_not_say_they_cancelled_logging_in(
    browser: Client,
) -> None:
    client_form = forms_in(browser.get("/").content)[0]  # "Connect CloudSync" for a signed-in user
    authorize = browser.post(client_form.action, client_form.hidden)

    back = browser.get(press_on_cloudsync(authorize["Location"], decision="deny"))

    assert back["Location"] == reverse("socialaccount_connections")
    assert messages_of(browser) == ["The permission was not granted: your CloudSync access is unchanged."]


@pytest.mark.parametrize("referer", ["https://evil.example/", NEEDS_WRITE])
def test_cancel_never_leaves_the_site_nor_loops_back_to_the_view(browser: Client, referer: str) -> None:
    location = browser.get(NEEDS_WRITE, HTTP_REFERER=referer)["Location"]

    assert "back" not in query_of(location)
    assert (
        'class="cloudsync-consent__cancel" href="/accounts/profile/"'
        in browser.get(location).content.decode()
    )


def test_off_site_next_and_back_given_by_hand_are_dropped(browser: Client) -> None:
    url = f"{reverse('cloudsync_consent')}?process=connect&scope=files:read&next=https://evil.example/&back=//evil.example/"
    html = browser.get(url).content.decode()

    assert "evil.example" not in html
    assert "Read your files" in html


def test_the_consent_page_wants_a_signed_in_user(client: Client, fake: Any) -> None:
    response = client.get(f"{reverse('cloudsync_consent')}?process=connect&scope=files:read")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_the_consent_page_only_connects(browser: Client) -> None:
    _, page = consent_page(browser)
    (form,) = forms_in(page.content)

    response = browser.post(f"{reverse('cloudsync_consent')}?process=login&scope=files:read", form.hidden)

    assert response.status_code == 400


def test_every_scope_of_cloudsyncs_dialect_has_plain_words() -> None:
    assert set(consent.SCOPE_DESCRIPTIONS) == set(dialect.KNOWN_SCOPES)
    assert consent.describe("workspaces:write") == "create and manage workspaces"
    assert consent.describe("unknown:scope") == "unknown:scope"


def test_the_consent_template_can_be_overridden(browser: Client, settings: Any, tmp_path: Any) -> None:
    (tmp_path / "cloudsync").mkdir()
    (tmp_path / "cloudsync" / "consent.html").write_text(
        "{% for scope in scopes %}[{{ scope.name }}: {{ scope.description }}]{% endfor %}"
    )
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]

    _, page = consent_page(browser)

    assert page.content == b"[workspaces:write: create and manage workspaces]"
