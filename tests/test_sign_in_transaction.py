"""A sign-in that fails halfway leaves nothing behind (issue 12): no user, social account, email
address or token row, and no signed-in session; over real HTTP against the fake CloudSync, with a
real SMTP backend whose server refuses the connection (a closed loopback port).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import django
import pytest
from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.cache import cache
from django.test import Client

from django_cloudsync.models import CloudSyncToken
from django_cloudsync.testing.flow import app_authorization, consent, sign_in, start
from tests.processes import free_port

User = get_user_model()

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
LOCMEM_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
APP_CODE_URL = "/accounts/cloudsync/app/code"
APP_REDIRECT_URI = "com.example.cloudsync:/oauth2redirect"
SPA_REDIRECT_URL = "/_allauth/browser/v1/auth/provider/redirect"
PROVIDER_TOKEN_URL = "/_allauth/app/v1/auth/provider/token"
APP_SIGNUP_URL = "/_allauth/app/v1/auth/provider/signup"
BROWSER_SESSION_URL = "/_allauth/browser/v1/auth/session"

# Each test commits for real (no wrapping test transaction), so that a ROLLBACK is what it checks.
pytestmark = [
    pytest.mark.django_db(transaction=True, databases="__all__"),
]


def send_mail_through(settings: Any, backend: str, **options: Any) -> None:
    """Point the site's mail at ``backend`` with ``options`` (``host``, ``port``, ``timeout``):
    ``MAILERS`` on Django 6.1, which deprecates the ``EMAIL_*`` settings; those before it."""
    if django.VERSION >= (6, 1):
        settings.MAILERS = {"default": {"BACKEND": backend, "OPTIONS": options}}
    else:
        settings.EMAIL_BACKEND = backend
        for option, value in options.items():
            setattr(settings, f"EMAIL_{option.upper()}", value)


@pytest.fixture
def verification_mail(settings: Any) -> Any:
    """allauth's default: a verification mail to every new user."""
    settings.ACCOUNT_EMAIL_VERIFICATION = "optional"
    # allauth sends one verification mail per address per few minutes (a cache-based rate
    # limit): each test's sign-up is a first one.
    cache.clear()
    return settings


@pytest.fixture
def refusing_smtp_server(verification_mail: Any) -> Callable[[], None]:
    """Django's SMTP backend, pointed at a loopback port nothing listens on; calling the fixture's
    value points the mail there again."""
    port = free_port()

    def refuse() -> None:
        send_mail_through(verification_mail, SMTP_BACKEND, host="127.0.0.1", port=port, timeout=5)

    refuse()
    return refuse


def rows_left() -> dict[str, int]:
    return {
        "users": User.objects.count(),
        "social accounts": SocialAccount.objects.count(),
        "email addresses": EmailAddress.objects.count(),
        "tokens": CloudSyncToken.objects.count(),
    }


NO_ROWS = {"users": 0, "social accounts": 0, "email addresses": 0, "tokens": 0}
ONE_USER = {"users": 1, "social accounts": 1, "email addresses": 1, "tokens": 1}


def browser() -> Client:
    # A browser sees the site's 500 page; the test client would raise the exception instead.
    return Client(raise_request_exception=False)


def post_provider_token(client: Client, fake: Any) -> Any:
    """An app signs in at allauth's provider/token endpoint with tokens CloudSync just issued."""
    issued = fake.issue_tokens()
    body = {"provider": "cloudsync", "process": "login", "token": {"client_id": fake.client_id, **issued}}
    return client.post(PROVIDER_TOKEN_URL, json.dumps(body), content_type="application/json")


def test_a_working_mail_server_gets_one_verification_mail_and_the_user_signed_in(
    database: str, fake: Any, verification_mail: Any
) -> None:
    # The counterpart of the tests below: the same sign-in does send that mail.
    client = browser()

    response = sign_in(client)

    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert rows_left() == ONE_USER
    assert client.get("/").content.startswith(b"connected")


def test_a_failing_verification_mail_at_the_callback_leaves_no_row_and_no_session(
    database: str, fake: Any, refusing_smtp_server: Callable[[], None], settings: Any
) -> None:
    client = browser()

    response = sign_in(client)

    assert response.status_code == 500
    assert rows_left() == NO_ROWS
    assert client.get("/").content.startswith(b"not connected")
    # Nothing half-done stands in the way once mail works: the same person signs up.
    send_mail_through(settings, LOCMEM_BACKEND)
    cache.clear()
    assert sign_in(client).status_code == 302
    assert rows_left() == ONE_USER
    assert len(mail.outbox) == 1


def test_a_failing_verification_mail_in_an_spas_redirect_flow_leaves_no_row(
    database: str, fake: Any, refusing_smtp_server: Callable[[], None]
) -> None:
    client = browser()
    redirect = client.post(
        SPA_REDIRECT_URL, {"provider": "cloudsync", "callback_url": "/spa/signed-in", "process": "login"}
    )
    assert redirect.status_code == 302

    response = client.get(consent(redirect["Location"]))

    assert response.status_code == 500
    assert rows_left() == NO_ROWS
    assert client.get(BROWSER_SESSION_URL).status_code == 401


def test_a_failing_verification_mail_at_the_app_code_endpoint_leaves_no_row(
    database: str, fake: Any, refusing_smtp_server: Callable[[], None]
) -> None:
    token = app_authorization(APP_REDIRECT_URI).token(fake.client_id)

    response = browser().post(
        APP_CODE_URL, json.dumps({"process": "login", "token": token}), content_type="application/json"
    )

    assert response.status_code == 500
    assert rows_left() == NO_ROWS


def test_a_returning_users_failed_sign_in_keeps_their_rows_as_they_were(
    database: str, fake: Any, refusing_smtp_server: Callable[[], None], settings: Any
) -> None:
    # Only what the failed sign-in wrote is rolled back; an earlier sign-in's rows stay.
    send_mail_through(settings, LOCMEM_BACKEND)
    assert sign_in(browser()).status_code == 302
    stored = CloudSyncToken.objects.get()
    refusing_smtp_server()

    # A returning user is sent no mail: the sign-in succeeds and replaces the tokens.
    assert sign_in(browser()).status_code == 302

    assert rows_left() == ONE_USER
    assert CloudSyncToken.objects.get().access_token() != stored.access_token()


def test_the_authorize_redirect_itself_writes_no_row(database: str, fake: Any) -> None:
    start(browser())

    assert rows_left() == NO_ROWS


def test_a_failing_verification_mail_at_allauths_provider_token_endpoint_leaves_no_row(
    database: str, fake: Any, refusing_smtp_server: Callable[[], None]
) -> None:
    # allauth's own view: CloudSyncMiddleware runs it in the sign-in transaction.
    response = post_provider_token(browser(), fake)

    assert response.status_code == 500
    assert rows_left() == NO_ROWS


def test_a_failing_verification_mail_at_the_sign_up_form_leaves_no_row_and_no_session(
    database: str, fake: Any, refusing_smtp_server: Callable[[], None], settings: Any
) -> None:
    # The sign-in pauses on allauth's sign-up form; the form's POST completes it.
    settings.SOCIALACCOUNT_AUTO_SIGNUP = False
    client = browser()
    pending = sign_in(client)
    assert pending.status_code == 302
    assert pending["Location"].endswith("/3rdparty/signup/")

    response = client.post(pending["Location"], {"email": "ada.lovelace@example.com", "username": "ada"})

    assert response.status_code == 500
    assert rows_left() == NO_ROWS
    assert client.get("/").content.startswith(b"not connected")


def test_a_failing_verification_mail_at_an_apps_sign_up_leaves_no_row(
    database: str, fake: Any, refusing_smtp_server: Callable[[], None], settings: Any
) -> None:
    settings.SOCIALACCOUNT_AUTO_SIGNUP = False
    client = browser()
    pending = post_provider_token(client, fake)
    assert pending.status_code == 401
    session_token = pending.json()["meta"]["session_token"]

    response = client.post(
        APP_SIGNUP_URL,
        json.dumps({"email": "ada.lovelace@example.com", "username": "ada"}),
        content_type="application/json",
        HTTP_X_SESSION_TOKEN=session_token,
    )

    assert response.status_code == 500
    assert rows_left() == NO_ROWS


def test_allauths_sign_up_form_still_signs_in_when_mail_works(
    database: str, fake: Any, verification_mail: Any, settings: Any
) -> None:
    settings.SOCIALACCOUNT_AUTO_SIGNUP = False
    client = browser()
    pending = sign_in(client)

    response = client.post(pending["Location"], {"email": "ada@example.com", "username": "ada"})

    assert response.status_code == 302
    assert rows_left() == ONE_USER
    assert len(mail.outbox) == 1
