"""Drive a "Sign in with CloudSync" from a test, the way a browser would.

The site side goes through Django's test client; the CloudSync side is the fake's real consent
page over HTTP, read and submitted like a form. Nothing on the way is mocked::

    from django_cloudsync.testing.flow import sign_in

    def test_sign_in(client, cloudsync_settings):
        response = sign_in(client)
        assert response.status_code == 302

With Django's ``AsyncClient`` (async views, an ASGI site), the same steps are awaited:
:func:`asign_in`, :func:`astart`, :func:`afollow_consent`. The fake's consent page is then
read in a thread, so the event loop that serves the site keeps going::

    async def test_sign_in(async_client, cloudsync_settings):
        response = await asign_in(async_client)

:func:`app_authorization` plays a mobile app instead: it gets a code with PKCE for the app's
redirect URI, to be posted to the site's ``cloudsync/app/code`` endpoint (allauth headless).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests
from asgiref.sync import sync_to_async

_TIMEOUT = 10


class _ConsentForm(HTMLParser):
    """The first form of a page: its action and its fields' values (selected options included)."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._select: str | None = None
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if self._done:
            return
        if tag == "form" and self.action is None:
            self.action = values.get("action", "")
        elif tag == "input" and values.get("type") == "hidden" and "name" in values:
            self.fields[values["name"]] = values.get("value", "")
        elif tag == "select":
            self._select = values.get("name")
        elif tag == "option" and self._select and ("selected" in values or self._select not in self.fields):
            self.fields[self._select] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "form" and self.action is not None:
            self._done = True


def _login_path(*, process: str, next: str | None, scope: str | None) -> str:  # noqa: A002
    from django.urls import reverse

    params = {"process": process}
    if next is not None:
        params["next"] = next
    if scope is not None:
        params["scope"] = scope
    return f"{reverse('cloudsync_login')}?{urlencode(params)}"


def _authorize_url(response: Any) -> str:
    """Where the site's login view sent the browser: CloudSync's authorize URL."""
    if response.status_code != 302:
        raise AssertionError(f"The login view answered {response.status_code}, not a redirect")
    return str(response["Location"])


def _check_continue_page(page: Any, location: str) -> None:
    if page.status_code != 200 or b'method="post"' not in page.content:
        raise AssertionError(f"Expected allauth's Continue page at {location}, got {page.status_code}")


def start(client: Any, *, process: str = "login", next: str | None = None, scope: str | None = None) -> str:  # noqa: A002
    """POST to the site's CloudSync login view; return the authorize URL it redirects to."""
    return _authorize_url(client.post(_login_path(process=process, next=next, scope=scope)))


async def astart(
    client: Any,
    *,
    process: str = "login",
    next: str | None = None,  # noqa: A002
    scope: str | None = None,
) -> str:
    """:func:`start` for Django's ``AsyncClient``."""
    return _authorize_url(await client.post(_login_path(process=process, next=next, scope=scope)))


def consent(authorize_url: str, *, decision: str = "allow", user_id: str | None = None) -> str:
    """Open the fake's consent page and press Allow or Deny; return where it redirects.

    A request CloudSync refuses at once (an unknown scope, ...) shows no page: its redirect back,
    with the error, is returned as it is, for the site to answer.
    """
    with requests.Session() as session:
        # Not followed: the redirect goes to the site, which the test's client serves, not requests.
        page = session.get(authorize_url, allow_redirects=False, timeout=_TIMEOUT)
        if page.status_code == 302:
            return str(page.headers["Location"])
        if page.status_code != 200:
            raise AssertionError(f"The consent page answered {page.status_code}")
        form = _ConsentForm()
        form.feed(page.text)
        if form.action is None:
            raise AssertionError("The consent page has no form")
        data = dict(form.fields, decision=decision)
        if user_id is not None:
            data["user"] = user_id
        answer = session.post(
            urljoin(page.url, form.action), data=data, allow_redirects=False, timeout=_TIMEOUT
        )
    if answer.status_code != 302:
        raise AssertionError(f"The consent form answered {answer.status_code}, not a redirect")
    return str(answer.headers["Location"])


def follow_consent(client: Any, location: str, *, decision: str = "allow", user_id: str | None = None) -> Any:
    """Follow a redirect to the site's CloudSync login URL (from ``@cloudsync_required``, or a
    re-authorization) through allauth's "Continue" page and the fake's consent; returns the
    site's answer to the callback."""
    _check_continue_page(client.get(location), location)
    authorize_url = _authorize_url(client.post(location))
    return client.get(consent(authorize_url, decision=decision, user_id=user_id))


async def afollow_consent(
    client: Any, location: str, *, decision: str = "allow", user_id: str | None = None
) -> Any:
    """:func:`follow_consent` for Django's ``AsyncClient``."""
    _check_continue_page(await client.get(location), location)
    authorize_url = _authorize_url(await client.post(location))
    return await client.get(await _aconsent(authorize_url, decision=decision, user_id=user_id))


async def _aconsent(authorize_url: str, *, decision: str, user_id: str | None) -> str:
    # requests blocks: a thread of its own, so that the loop serving the site is not held up.
    in_thread = sync_to_async(consent, thread_sensitive=False)
    return await in_thread(authorize_url, decision=decision, user_id=user_id)


def sign_in(
    client: Any,
    *,
    decision: str = "allow",
    user_id: str | None = None,
    process: str = "login",
    next: str | None = None,  # noqa: A002
    scope: str | None = None,
) -> Any:
    """The whole round trip; returns the site's answer to the callback."""
    callback = consent(
        start(client, process=process, next=next, scope=scope), decision=decision, user_id=user_id
    )
    return client.get(callback)


async def asign_in(
    client: Any,
    *,
    decision: str = "allow",
    user_id: str | None = None,
    process: str = "login",
    next: str | None = None,  # noqa: A002
    scope: str | None = None,
) -> Any:
    """:func:`sign_in` for Django's ``AsyncClient``."""
    authorize_url = await astart(client, process=process, next=next, scope=scope)
    return await client.get(await _aconsent(authorize_url, decision=decision, user_id=user_id))


@dataclass(frozen=True)
class AppAuthorization:
    """What an app holds after CloudSync's consent: the code, its PKCE verifier, its redirect URI."""

    code: str = field(repr=False)
    code_verifier: str = field(repr=False)
    redirect_uri: str

    def token(self, client_id: str) -> dict[str, str]:
        """The ``token`` object an app posts to the site's ``cloudsync/app/code`` endpoint."""
        return {
            "client_id": client_id,
            "code": self.code,
            "code_verifier": self.code_verifier,
            "redirect_uri": self.redirect_uri,
        }


def app_authorization(
    redirect_uri: str,
    *,
    scope: str = "workspaces:read offline_access",
    user_id: str | None = None,
    client_id: str | None = None,
) -> AppAuthorization:
    """Do what a mobile app does before it signs in with a code: CloudSync's authorize request
    with the site's ``client_id`` (default: the site's CloudSync app), the app's ``redirect_uri``
    and a fresh PKCE challenge, then Allow on the fake's consent page."""
    if client_id is None:
        from ..tokens import client_credentials

        client_id = client_credentials()["client_id"]
    from .. import conf, dialect

    verifier = secrets.token_urlsafe(48)
    state = secrets.token_urlsafe(16)
    params = {
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": scope,
        "state": state,
        "code_challenge": dialect.s256_challenge(verifier),
        "code_challenge_method": "S256",
    }
    location = consent(f"{conf.auth_url()}{dialect.AUTHORIZE_PATH}?{urlencode(params)}", user_id=user_id)
    answer = {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}
    if answer.get("state") != state or "code" not in answer:
        raise AssertionError(f"CloudSync answered the app without a code: {answer.get('error')}")
    return AppAuthorization(code=answer["code"], code_verifier=verifier, redirect_uri=redirect_uri)
