"""What apps post to the headless endpoints (a code with its PKCE verifier, or an access token),
generated: a request signs in exactly when every value is the app's real one, and is otherwise
allauth's 400; nothing is persisted from a refused one, and no secret reaches the answer or a log.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import allauth
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from hypothesis import assume, event, given

from django_cloudsync.models import CloudSyncToken
from tests.hostile.examples import app_values
from tests.hostile.oracles import (
    access_token_signs_in,
    assert_logs_show_no_secret,
    assert_page_shows_no_secret,
    code_signs_in,
    persisted,
)
from tests.hostile.strategies import APP_SECRETS, HOSTILE, Secret, code_bodies, materialize, token_bodies

pytestmark = pytest.mark.django_db

User = get_user_model()

APP_CODE_PATH = "/accounts/cloudsync/app/code"
ALLAUTH_VERSION = tuple(int(part) for part in allauth.__version__.split(".")[:2])
APP_TOKEN_PATH = "/_allauth/app/v1/auth/provider/token"


def check_app_request(
    fake: Any,
    app_logs: pytest.LogCaptureFixture,
    path: str,
    body: Any,
    signs_in: Callable[[Any, Mapping[Any, str]], bool],
) -> None:
    fake.clear_faults()
    values = app_values(fake)
    secrets = {name: values[name] for name in (*APP_SECRETS, Secret.CLIENT_SECRET)}
    app_logs.clear()
    data = body if isinstance(body, bytes) else json.dumps(materialize(body, values)).encode()
    if path == APP_TOKEN_PATH and ALLAUTH_VERSION < (65, 20):
        # allauth's own endpoints answered a JSON array or number with a 500 until 65.20.
        assume(isinstance(body, (bytes, dict)))
    expected = not isinstance(body, bytes) and signs_in(json.loads(data), values)
    before, asked = persisted(), fake.counters["token_requests"] + fake.counters["api_calls"]

    response = Client(raise_request_exception=False).generic(
        "POST", path, data, content_type="application/json"
    )

    event(f"HTTP {response.status_code}")
    if fake.counters["token_requests"] + fake.counters["api_calls"] > asked:
        event("CloudSync was asked")
    assert_page_shows_no_secret(response, secrets)
    assert_logs_show_no_secret(app_logs.records, secrets)
    if expected:
        assert response.status_code == 200, response.content
        assert CloudSyncToken.objects.get().account_id == "usr_ada"
        User.objects.all().delete()  # what a legitimate sign-in created
    else:
        # allauth's own provider/token endpoint answers an anonymous "connect" with its 403.
        allowed = {400, 403} if path == APP_TOKEN_PATH else {400}
        assert response.status_code in allowed, (response.status_code, response.content)
    assert persisted() == before


@HOSTILE
@given(body=code_bodies)
def test_no_generated_app_code_request_gets_a_500_persists_or_leaks(
    hostile_settings: Any, app_logs: pytest.LogCaptureFixture, body: Any
) -> None:
    check_app_request(hostile_settings, app_logs, APP_CODE_PATH, body, code_signs_in)


@HOSTILE
@given(body=token_bodies)
def test_no_generated_app_token_request_gets_a_500_persists_or_leaks(
    hostile_settings: Any, app_logs: pytest.LogCaptureFixture, body: Any
) -> None:
    check_app_request(hostile_settings, app_logs, APP_TOKEN_PATH, body, access_token_signs_in)
