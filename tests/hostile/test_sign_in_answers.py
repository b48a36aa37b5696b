"""CloudSync's answers at sign-in, generated: the token endpoint's answer to the code exchange, then
the profile (``GET /v1/me``).

An answer that is valid by CloudSync's documented dialect signs in; every other one is allauth's
friendly failure page. Either way nothing else is persisted, and no token, code or client secret
reaches the page, a header or a log. PostgreSQL refuses what SQLite stores (NUL in text, \\u0000 in
jsonb, overlong varchars): both properties run there again, with fewer examples.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from django.contrib.auth import get_user_model
from hypothesis import event, given

from django_cloudsync.models import CloudSyncToken
from tests.helpers import assert_failure_page
from tests.hostile.examples import start_sign_in, valid_token_answer
from tests.hostile.oracles import (
    Rendered,
    assert_logs_show_no_secret,
    assert_page_shows_no_secret,
    persisted,
    profile_outcome,
    token_endpoint_outcome,
)
from tests.hostile.strategies import HOSTILE, Answer, Secret, fewer_examples, profile_answers, token_answers

pytestmark = pytest.mark.django_db

User = get_user_model()
Test = TypeVar("Test", bound=Callable[..., None])


def check_token_response_at_sign_in(fake: Any, app_logs: pytest.LogCaptureFixture, answer: Answer) -> None:
    browser, callback, secrets = start_sign_in(fake, app_logs)
    rendered = Rendered(*answer.render(secrets))
    fake.respond_next("token", rendered.status, rendered.body, rendered.headers)
    outcome = token_endpoint_outcome(rendered)
    signs_in = (
        outcome == "tokens" and json.loads(rendered.body).get("access_token") == secrets[Secret.ACCESS_TOKEN]
    )
    before = persisted()
    token_requests = fake.counters["token_requests"]

    response = browser.get(callback)

    event(f"expected: {'sign-in' if signs_in else outcome}")
    assert fake.counters["token_requests"] == token_requests + 1
    assert_page_shows_no_secret(response, secrets)
    assert_logs_show_no_secret(app_logs.records, secrets)
    if signs_in:
        assert response.status_code == 302, response.status_code
        stored = CloudSyncToken.objects.get()
        assert stored.access_token() == secrets[Secret.ACCESS_TOKEN]
        User.objects.all().delete()  # what a legitimate sign-in created
    else:
        assert_failure_page(response)
    assert persisted() == before


@HOSTILE
@given(answer=token_answers)
def test_no_malformed_token_response_gets_a_500_persists_or_leaks(
    hostile_settings: Any, app_logs: pytest.LogCaptureFixture, answer: Answer
) -> None:
    check_token_response_at_sign_in(hostile_settings, app_logs, answer)


def on_server_databases(test: Test) -> Test:
    """The property on each database server (the ``on_server_database`` fixture routes every model
    there), with a fifth of the examples."""
    marked: Test = pytest.mark.django_db(databases="__all__")(fewer_examples(5)(test))
    return marked


@on_server_databases
@given(answer=token_answers)
def test_no_malformed_token_response_gets_a_500_on_a_database_server(
    on_server_database: str, hostile_settings: Any, app_logs: pytest.LogCaptureFixture, answer: Answer
) -> None:
    check_token_response_at_sign_in(hostile_settings, app_logs, answer)


def check_profile_at_sign_in(fake: Any, app_logs: pytest.LogCaptureFixture, answer: Answer) -> None:
    browser, callback, secrets = start_sign_in(fake, app_logs)
    fake.respond_next("token", *valid_token_answer(secrets))
    rendered = Rendered(*answer.render(secrets))
    fake.respond_next("me", rendered.status, rendered.body, rendered.headers)
    usable = profile_outcome(rendered)
    before, faults_before = persisted(), fake.counters["faults_injected"]

    response = browser.get(callback)

    assert_page_shows_no_secret(response, secrets)
    assert_logs_show_no_secret(app_logs.records, secrets)
    assert fake.counters["faults_injected"] == faults_before + 2  # both answers used, once each
    if not usable:
        event("expected: refused")
        assert_failure_page(response)
        assert persisted() == before
        return
    assert response.status_code == 302, response.status_code
    if CloudSyncToken.objects.exists():
        event("expected: signed in")
        assert CloudSyncToken.objects.get().access_token() == secrets[Secret.ACCESS_TOKEN]
        User.objects.all().delete()  # what a legitimate sign-in created
    else:
        # allauth asks for what the profile lacks (a usable email) on its signup form; the
        # tokens stay sealed in the session until the account exists.
        event("expected: signup form")
        assert "signup" in response["Location"]
    assert persisted() == before


@fewer_examples(2)
@given(answer=profile_answers)
def test_no_malformed_profile_at_sign_in_gets_a_500_persists_or_leaks(
    hostile_settings: Any, app_logs: pytest.LogCaptureFixture, answer: Answer
) -> None:
    check_profile_at_sign_in(hostile_settings, app_logs, answer)


@on_server_databases
@given(answer=profile_answers)
def test_no_malformed_profile_at_sign_in_gets_a_500_on_a_database_server(
    on_server_database: str, hostile_settings: Any, app_logs: pytest.LogCaptureFixture, answer: Answer
) -> None:
    check_profile_at_sign_in(hostile_settings, app_logs, answer)
