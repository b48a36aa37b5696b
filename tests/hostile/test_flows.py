"""Hostile input on the surfaces issue 13 found: generated bodies, query strings and login links.

Property-based tests (hypothesis); each example is a real request to the real app, with the fake
CloudSync on a real socket where a flow needs it. What must hold for every example:

- the app-code endpoint answers every body that is not a well-formed sign-in, nested however
  deeply, with allauth's 400 error list, never a 500, and keeps nothing;
- the admin's changelist answers a query string the same way whatever the ciphertexts are (the
  same status, the same rows), and shows neither ciphertext: no lookup, search or ordering on
  one tells anything about it;
- a login link's ``auth_params`` adds what it likes to the authorization request, and changes
  none of the protected parameters;
- whatever sequence of sign-ins runs with ``SOCIALACCOUNT_STORE_TOKENS`` on, allauth's
  ``SocialToken`` rows are empty and nothing sealed with the site's key is stored outside this
  app's table.

The number of examples is the loaded hypothesis profile's; the examples are derandomized.
Database state persists across the examples of one test (pytest-django rolls back per test),
so each example undoes what it created.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from allauth.socialaccount.models import SocialAccount, SocialToken
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_cloudsync.models import CloudSyncToken
from django_cloudsync.socialaccount.provider import PROTECTED_AUTH_PARAMS
from django_cloudsync.testing.flow import app_authorization, consent, sign_in
from tests.test_provider import (
    APP_REDIRECT_URI,
    CALLBACK_URL,
    raw_social_tokens,
    sealed_values_outside_our_table,
)

pytestmark = pytest.mark.django_db

User = get_user_model()

FLOWS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
    database=None,
)

APP_CODE_URL = "/accounts/cloudsync/app/code"
CHANGELIST = "admin:django_cloudsync_cloudsynctoken_changelist"
#: Text a URL can carry: any character UTF-8 can encode (no lone surrogates).
URL_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)


def rows() -> dict[str, int]:
    models: tuple[Any, ...] = (User, SocialAccount, SocialToken, CloudSyncToken)
    return {model.__name__: model.objects.count() for model in models}


# --------------------------------------------------------------------------- the app-code endpoint

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | URL_TEXT,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["process", "token", "code", "client_id", "a"]) | URL_TEXT, children
        )
    ),
    max_leaves=12,
)
PKCE_VERIFIERS = st.text("abcdefghijklmnopqrstuvwxyz0123456789-._~", min_size=43, max_size=128)
#: Bodies shaped like a sign-in, with every value generated: none of them holds a code CloudSync
#: issued, so each one must be refused.
SIGN_IN_SHAPED = st.fixed_dictionaries(
    {"process": st.sampled_from(["login", "connect", "elevate"]) | JSON_VALUES},
    optional={
        "token": st.fixed_dictionaries(
            {},
            optional={
                "client_id": st.just("test-client-id") | JSON_VALUES,
                "code": URL_TEXT | JSON_VALUES,
                "code_verifier": st.text(
                    "abcdefghijklmnopqrstuvwxyz0123456789-._~", min_size=43, max_size=128
                )
                | JSON_VALUES,
                "redirect_uri": st.just(APP_REDIRECT_URI) | JSON_VALUES,
            },
        )
        | JSON_VALUES
    },
)
NESTED = st.builds(
    lambda opening, depth, inner, tail: opening * depth + inner + tail,
    st.sampled_from([b"[", b'{"a":', b'{"token":', b'{"process": "login", "token": [']),
    st.integers(1, 60_000),
    st.sampled_from([b"", b"1", b"{}", b'"x"']),
    st.sampled_from([b"", b"]", b"}" * 3, b"]" * 1000]),
)
BODIES = (
    st.binary(max_size=200)
    | JSON_VALUES.map(lambda value: json.dumps(value).encode())
    | SIGN_IN_SHAPED.map(lambda value: json.dumps(value).encode())
    | NESTED
)


@FLOWS
@given(body=BODIES)
def test_every_malformed_app_code_body_is_allauths_400(body: bytes, fake: Any) -> None:
    before = rows()

    response = Client(raise_request_exception=False).generic(
        "POST", APP_CODE_URL, body, content_type="application/json"
    )

    assert response.status_code == 400, (response.status_code, response.content[:200])
    answer = response.json()
    assert answer["status"] == 400
    assert answer["errors"]
    assert all(isinstance(error["message"], str) and error["code"] for error in answer["errors"])
    assert rows() == before


# --------------------------------------------------------------------------- the admin's query strings

CIPHERTEXT_FIELDS = ("access_token_ciphertext", "refresh_token_ciphertext")
LOOKUPS = [
    "exact",
    "iexact",
    "regex",
    "iregex",
    "startswith",
    "endswith",
    "contains",
    "gt",
    "lt",
    "in",
    "isnull",
]
LOOKUP_PATHS = st.builds(
    lambda relation, field, lookup: relation + field + lookup,
    st.sampled_from(
        ["", "social_account__cloudsync_token__", "social_account__user__socialaccount__cloudsync_token__"]
    ),
    st.sampled_from([*CIPHERTEXT_FIELDS, "version", "id", "account_id", "scope", "environment"]),
    st.sampled_from(["", *(f"__{lookup}" for lookup in LOOKUPS)]),
)
QUERY_KEYS = LOOKUP_PATHS | st.sampled_from(["o", "q", "p", "e", "all", "_to_field", "_facets"]) | URL_TEXT


@st.composite
def probes(draw: st.DrawFn) -> tuple[str, int, str]:
    """A value that would match a ciphertext: (field, prefix length, how it is written)."""
    return (
        draw(st.sampled_from(CIPHERTEXT_FIELDS)),
        draw(st.integers(1, 12)),
        draw(st.sampled_from(["prefix", "regex", "suffix", "whole"])),
    )


def probe_value(row: CloudSyncToken, probe: tuple[str, int, str]) -> str:
    field, length, form = probe
    ciphertext: str = getattr(row, field)
    return {
        "prefix": ciphertext[:length],
        "regex": "^" + re.escape(ciphertext[:length]),
        "suffix": ciphertext[-length:],
        "whole": ciphertext,
    }[form]


QUERY_VALUES = probes() | URL_TEXT


def answer_of(response: Any) -> tuple[int, list[str]]:
    """What a changelist tells: its status and which rows it lists."""
    if response.status_code != 200:
        return response.status_code, []
    return 200, sorted(str(row.pk) for row in response.context["cl"].result_list)


@pytest.fixture
def view_only_staff(fake: Any, client: Client) -> Client:
    assert sign_in(client).status_code == 302
    user = User.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_cloudsynctoken"))
    staff = Client(raise_request_exception=False)
    staff.force_login(user)
    return staff


@FLOWS
@given(query=st.lists(st.tuples(QUERY_KEYS, QUERY_VALUES), min_size=1, max_size=3))
def test_no_query_string_tells_anything_about_a_ciphertext(
    view_only_staff: Client, query: list[tuple[str, Any]]
) -> None:
    row = CloudSyncToken.objects.get()
    params = [(key, probe_value(row, value) if isinstance(value, tuple) else value) for key, value in query]
    url = f"{reverse(CHANGELIST)}?{urlencode(params)}"

    real = view_only_staff.get(url)
    # The same request against other ciphertexts: a leaking lookup would now answer differently.
    CloudSyncToken.objects.filter(pk=row.pk).update(
        access_token_ciphertext="v1$k$" + "A" * 60, refresh_token_ciphertext="v1$k$" + "B" * 60
    )
    try:
        other = view_only_staff.get(url)
    finally:
        CloudSyncToken.objects.filter(pk=row.pk).update(
            access_token_ciphertext=row.access_token_ciphertext,
            refresh_token_ciphertext=row.refresh_token_ciphertext,
        )

    assert real.status_code != 500
    assert answer_of(real) == answer_of(other)
    page = real.content.decode(errors="replace")
    for ciphertext in (row.access_token_ciphertext, row.refresh_token_ciphertext):
        body = ciphertext.rsplit("$", 1)[-1]
        # The page may echo the query string back; it must show nothing the query did not carry.
        sent = any(body in value for _, value in params)
        assert sent or body not in page


# --------------------------------------------------------------------------- a login link's auth_params

AUTH_PARAM_NAMES = (
    st.sampled_from(sorted(PROTECTED_AUTH_PARAMS))
    | st.sampled_from(["prompt", "login_hint", "nonce", "display", "ui_locales", "Client_ID", "state "])
    | URL_TEXT.filter(bool)
)


@FLOWS
@given(auth_params=st.dictionaries(AUTH_PARAM_NAMES, URL_TEXT.filter(bool), min_size=1, max_size=6))
def test_a_login_links_auth_params_never_change_a_protected_parameter(
    fake: Any, auth_params: dict[str, str]
) -> None:
    client = Client(raise_request_exception=False)
    query = urlencode({"process": "login", "auth_params": urlencode(auth_params)})

    response = client.post(f"{reverse('cloudsync_login')}?{query}")

    assert response.status_code == 302, response.content[:200]
    params = parse_qs(urlsplit(response["Location"]).query, keep_blank_values=True)
    assert params["client_id"] == [fake.client_id]
    assert params["redirect_uri"] == [CALLBACK_URL]
    assert params["response_type"] == ["code"]
    assert params["scope"] == ["workspaces:read offline_access"]
    assert params["code_challenge_method"] == ["S256"]
    assert "response_mode" not in params
    for name in ("state", "code_challenge"):
        assert len(params[name]) == 1
        assert params[name][0] != auth_params.get(name)
    # What is not protected goes to CloudSync as the link gave it.
    for name, value in auth_params.items():
        if name not in PROTECTED_AUTH_PARAMS and name.strip():
            assert params.get(name) == [value], name


# --------------------------------------------------------------------------- allauth's SocialToken

SIGN_INS = ("redirect", "connect", "app_code", "app_token")


def run_sign_in(way: str, fake: Any) -> None:
    client = Client()
    if way == "redirect":
        assert sign_in(client).status_code == 302
    elif way == "connect":
        local, _ = User.objects.get_or_create(username="grace", defaults={"email": "grace@example.com"})
        client.force_login(local)
        # Refused when ada's account is connected to another user already; the property holds either way.
        client.get(consent(_connect_url(client)))
    elif way == "app_code":
        token = app_authorization(APP_REDIRECT_URI).token(fake.client_id)
        body = {"process": "login", "token": token}
        response = client.post(APP_CODE_URL, json.dumps(body), content_type="application/json")
        assert response.status_code == 200, response.content
    else:
        issued = fake.issue_tokens()
        body = {
            "provider": "cloudsync",
            "process": "login",
            "token": {"client_id": fake.client_id, "access_token": issued["access_token"]},
        }
        response = client.post(
            "/_allauth/app/v1/auth/provider/token", json.dumps(body), content_type="application/json"
        )
        assert response.status_code == 200, response.content


def _connect_url(client: Client) -> str:
    response = client.post(f"{reverse('cloudsync_login')}?{urlencode({'process': 'connect'})}")
    assert response.status_code == 302
    return str(response["Location"])


@FLOWS
@given(ways=st.lists(st.sampled_from(SIGN_INS), min_size=1, max_size=3))
def test_no_sequence_of_sign_ins_leaves_a_sealed_token_in_allauths_social_token(
    fake: Any, settings: Any, ways: list[str]
) -> None:
    settings.SOCIALACCOUNT_STORE_TOKENS = True
    try:
        for way in ways:
            run_sign_in(way, fake)

            assert {row[:2] for row in raw_social_tokens()} <= {("", "")}
            assert sealed_values_outside_our_table() == []
        assert CloudSyncToken.objects.get().access_token().startswith("at_test_")
    finally:
        User.objects.all().delete()
        Session.objects.all().delete()
