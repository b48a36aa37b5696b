"""A mobile app's whole path, over real HTTP: the test site under a live server, the fake CloudSync
on its own socket, and the app played with ``requests``.

Code with PKCE → session token → the site's API (DRF and ninja) with ``X-Session-Token`` →
workspaces; CloudSync kills the grant → the API's JSON answer says how to connect again → a new
code sign-in with ``process=connect`` → workspaces again.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from django_cloudsync.models import CloudSyncToken
from django_cloudsync.testing.flow import app_authorization

pytestmark = pytest.mark.django_db(transaction=True)

APP_REDIRECT_URI = "com.example.cloudsync:/oauth2redirect"
TIMEOUT = 10


@pytest.fixture(params=["/api/drf/workspaces/", "/api/ninja/workspaces"], ids=["drf", "ninja"])
def endpoint(request: pytest.FixtureRequest) -> str:
    pytest.importorskip("rest_framework" if "drf" in request.param else "ninja")
    return str(request.param)


def code_sign_in(site: str, fake: Any, *, scope: str, process: str, session_token: str | None = None) -> Any:
    """What the app does: CloudSync's consent in the system browser, then the code to the site."""
    authorized = app_authorization(APP_REDIRECT_URI, scope=scope)
    headers = {"X-Session-Token": session_token} if session_token else {}
    return requests.post(
        f"{site}/accounts/cloudsync/app/code",
        json={"process": process, "token": authorized.token(fake.client_id)},
        headers=headers,
        timeout=TIMEOUT,
        allow_redirects=False,
    )


def test_an_app_signs_in_lists_workspaces_loses_the_grant_and_connects_again(
    live_server: Any, fake: Any, endpoint: str
) -> None:
    site = live_server.url
    signed_in = code_sign_in(site, fake, scope="workspaces:read offline_access", process="login")
    assert signed_in.status_code == 200, signed_in.text
    session_token = signed_in.json()["meta"]["session_token"]
    api = requests.Session()
    api.headers["X-Session-Token"] = session_token

    listed = api.get(site + endpoint, timeout=TIMEOUT, allow_redirects=False)
    assert listed.status_code == 200, listed.text
    assert listed.json() == {"workspaces": ["Personal", "Team"]}

    fake.revoke_tokens()
    fake.expire_access_tokens()
    refused = api.get(site + endpoint, timeout=TIMEOUT, allow_redirects=False)

    assert refused.status_code == 403, refused.text
    assert refused.headers["Content-Type"].startswith("application/json")
    body = refused.json()
    assert body["errors"][0]["code"] == "cloudsync_reauthorization_required"
    flow = body["data"]["flows"][0]
    assert flow["id"] == "cloudsync_app_code"
    assert flow["process"] == "connect"
    assert flow["client_id"] == fake.client_id
    assert not CloudSyncToken.objects.exists()

    connected = code_sign_in(
        site, fake, scope=flow["scope"], process=flow["process"], session_token=session_token
    )
    assert connected.status_code == 200, connected.text
    again = api.get(site + endpoint, timeout=TIMEOUT, allow_redirects=False)

    assert again.status_code == 200, again.text
    assert again.json() == {"workspaces": ["Personal", "Team"]}
    assert CloudSyncToken.objects.get().scopes == ["workspaces:read", "offline_access"]
    assert fake.counters["code_exchanges"] == 2


def test_bad_session_tokens_over_http_get_a_4xx_json(live_server: Any, fake: Any, endpoint: str) -> None:
    for token in ["", "nope", "x" * 3000, "%00", "é"]:
        response = requests.get(
            live_server.url + endpoint,
            headers={"X-Session-Token": token.encode().decode("latin-1")},
            timeout=TIMEOUT,
            allow_redirects=False,
        )
        assert 400 <= response.status_code < 500, (token, response.status_code)
        assert response.headers["Content-Type"].startswith("application/json")
