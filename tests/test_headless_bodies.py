"""The app-code endpoint answers every malformed body with allauth's JSON error list, never a 500.

allauth's own parser answers a body that is not JSON with an empty 400, and lets the
``RecursionError`` of a deeply nested body through (a 500); the endpoint parses its body itself.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from django_cloudsync.models import CloudSyncToken

pytestmark = pytest.mark.django_db

APP_CODE_URL = "/accounts/cloudsync/app/code"
DEPTH = 100_000


def post_raw(body: bytes) -> Any:
    # raise_request_exception=False: an unhandled exception is the 500 a real client would get.
    client = Client(raise_request_exception=False)
    return client.generic("POST", APP_CODE_URL, body, content_type="application/json")


def assert_allauths_400(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 400, response.content[:200]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == 400
    assert body["errors"], body
    return list(body["errors"])


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * DEPTH + b"]" * DEPTH, id="nested-arrays"),
        pytest.param(b'{"a":' * DEPTH + b"1" + b"}" * DEPTH, id="nested-objects"),
        pytest.param(
            b'{"process": "login", "token": ' + b"[" * DEPTH + b"]" * DEPTH + b"}", id="nested-token"
        ),
        pytest.param(b'{"process": "login", "token": {"code": ' + b"9" * 5000 + b"}}", id="huge-integer"),
    ],
)
def test_a_body_nested_too_deeply_or_too_big_a_number_is_allauths_400(body: bytes, fake: Any) -> None:
    errors = assert_allauths_400(post_raw(body))

    assert [error["code"] for error in errors] == ["invalid"]
    assert fake.counters["token_requests"] == fake.counters["api_calls"] == 0
    assert not CloudSyncToken.objects.exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "The body is not JSON (or is nested too deeply)."),
        (b"\xff\xfe", "The body is not JSON (or is nested too deeply)."),
        (b'{"process": "login"', "The body is not JSON (or is nested too deeply)."),
        (b"[]", "The body must be a JSON object."),
        (b"null", "The body must be a JSON object."),
        (b'"a-code"', "The body must be a JSON object."),
    ],
)
def test_a_body_that_is_not_a_json_object_is_allauths_400_with_a_message(
    body: bytes, message: str, fake: Any
) -> None:
    errors = assert_allauths_400(post_raw(body))

    assert errors == [{"code": "invalid", "message": message}]
    assert fake.counters["token_requests"] == 0


def test_an_empty_body_is_allauths_400_for_the_missing_fields(fake: Any) -> None:
    errors = assert_allauths_400(post_raw(b""))

    assert {(error["code"], error.get("param")) for error in errors} == {
        ("required", "process"),
        ("required", "token"),
    }
