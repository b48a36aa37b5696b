"""Hostile input on the API endpoints (DRF, ninja) and on the SPA's connect: properties, with
the profile's count of examples (``tests/hostile/strategies.py``). Whatever a client sends as its
credentials, ``Accept`` or ``scope``, the answer is a 4xx in JSON: never a redirect, never a 500.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client, RequestFactory
from hypothesis import given
from hypothesis import strategies as st

from django_cloudsync import responses
from django_cloudsync.testing.flow import sign_in
from tests.helpers import RequestHeaders
from tests.hostile.strategies import HOSTILE

pytestmark = pytest.mark.django_db

#: What can travel in an HTTP/1.1 header value (WSGI hands it over as Latin-1).
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=300)
#: Values that look almost right: prefixes of real schemes, scope names, JWT and session shapes.
near_misses = st.one_of(
    header_values,
    st.builds(
        lambda scheme, rest: f"{scheme} {rest}",
        st.sampled_from(["Bearer", "Token", "bearer", ""]),
        header_values,
    ),
    st.sampled_from(["a.b.c", "eyJhbGciOiJub25lIn0.e30.", "x" * 5000, "%00", "\x7f"]),
)
scope_values = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(["workspaces:write", "files:read", "a b", "", ",", "é", '"']), max_size=20).map(
        ",".join
    ),
)
ENDPOINTS = ["/api/drf/workspaces/", "/api/ninja/workspaces"]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=["drf", "ninja"])
@HOSTILE
@given(
    session_token=st.none() | near_misses,
    authorization=st.none() | near_misses,
    accept=header_values,
    scope=scope_values,
)
def test_api_endpoints_answer_bad_credentials_with_a_4xx_json(
    endpoint: str, fake: Any, session_token: str | None, authorization: str | None, accept: str, scope: str
) -> None:
    pytest.importorskip("rest_framework" if "drf" in endpoint else "ninja")
    headers: RequestHeaders = {"HTTP_ACCEPT": accept}
    if session_token is not None:
        headers["HTTP_X_SESSION_TOKEN"] = session_token
    if authorization is not None:
        headers["HTTP_AUTHORIZATION"] = authorization

    response = Client().get(endpoint, {"scope": scope}, **headers)

    assert 400 <= response.status_code < 500, (response.status_code, response.content[:200])
    assert response["Content-Type"].startswith("application/json")


@pytest.fixture
def signed_in_client(fake: Any) -> Client:
    client = Client()
    assert sign_in(client).status_code == 302
    return client


@HOSTILE
@given(scope=scope_values)
def test_the_spas_connect_takes_scope_names_or_answers_400(signed_in_client: Client, scope: str) -> None:
    response = signed_in_client.post(
        "/_allauth/browser/v1/auth/provider/redirect?" + urlencode({"scope": scope}),
        {"provider": "cloudsync", "process": "connect", "callback_url": "/spa/"},
    )

    names = [part for part in scope.split(",") if part]
    if len(names) <= responses.MAX_REQUESTED_SCOPES and all(responses.SCOPE_NAME.fullmatch(n) for n in names):
        assert response.status_code == 302
        assert "/oauth/authorize?" in response["Location"]
    else:
        assert response.status_code == 400
        assert response.json()["errors"][0]["code"] == "cloudsync_invalid_scope"


@HOSTILE
@given(accept=header_values, session_token=st.none() | header_values)
def test_choosing_json_never_fails(accept: str, session_token: str | None) -> None:
    headers: RequestHeaders = {"HTTP_ACCEPT": accept}
    if session_token is not None:
        headers["HTTP_X_SESSION_TOKEN"] = session_token
    request = RequestFactory().get("/", **headers)

    assert responses.headless_client(request) in (None, "app", "browser")
    assert isinstance(responses.wants_json(request), bool)
