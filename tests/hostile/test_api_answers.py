"""The API client, answered anything: it returns, or raises the typed error ``errors.py`` documents
for that answer, and nothing else (no ``KeyError``, ``ValueError``, ``UnicodeError`` or ``requests``
exception); no error, ``repr`` or log holds a token; a failed call changes no stored token, and a
401 on a user's stored token is refreshed once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from hypothesis import event, given
from hypothesis import strategies as st

from django_cloudsync import errors
from django_cloudsync.client import CloudSync
from django_cloudsync.models import CloudSyncToken
from django_cloudsync.sources import client_for
from tests.hostile.examples import fresh_secrets
from tests.hostile.oracles import (
    API_CALLS,
    Rendered,
    api_expectation,
    assert_error_shows_no_secret,
    assert_logs_show_no_secret,
    attempt,
    row_state,
)
from tests.hostile.strategies import HOSTILE, Answer, Secret, api_answers

pytestmark = pytest.mark.django_db

User = get_user_model()


@HOSTILE
@given(answer=api_answers, call=st.sampled_from(sorted(API_CALLS)), stored=st.booleans())
def test_the_api_client_raises_only_typed_errors_that_hold_no_token(
    hostile_settings: Any,
    connected: Callable[[], CloudSyncToken],
    app_logs: pytest.LogCaptureFixture,
    answer: Answer,
    call: str,
    stored: bool,
) -> None:
    fake = hostile_settings
    fake.clear_faults()
    app_logs.clear()
    row = connected()
    if stored:
        user_client = client_for(row.user)
        assert user_client is not None
        api, access_token = user_client, row.access_token()
    else:
        access_token = fake.issue_tokens()["access_token"]
        api = CloudSync(access_token=access_token)
    secrets = {
        **fresh_secrets(fake),
        Secret.STORED_ACCESS_TOKEN: access_token,
        Secret.STORED_REFRESH_TOKEN: row.refresh_token() or "",
    }
    method, endpoint, _ = API_CALLS[call]
    rendered = Rendered(*answer.render(secrets))
    fake.respond_next(endpoint, rendered.status, rendered.body, rendered.headers)
    expected = api_expectation(rendered, call, refreshes_on_401=stored)
    calls_before, stored_before = fake.counters["api_calls"], row_state(row)

    _, exc = attempt(lambda: method(api))

    event(f"raised {type(exc).__name__}" if exc is not None else "returned")
    assert (type(exc) if exc is not None else None) in expected, f"{exc!r}, expected one of {expected}"
    if exc is not None:
        assert_error_shows_no_secret(exc, secrets)
    if isinstance(exc, errors.RateLimited):
        assert exc.retry_after is None or exc.retry_after >= 0

    refreshed = stored and expected == (None,) and rendered.status == 401
    assert fake.counters["api_calls"] == calls_before + (2 if refreshed else 1)  # no retries
    assert_logs_show_no_secret(app_logs.records, secrets)
    after = CloudSyncToken.objects.get(pk=row.pk)
    if refreshed:
        assert after.version == row.version + 1
        renewed = {
            Secret.STORED_ACCESS_TOKEN: after.access_token(),
            Secret.STORED_REFRESH_TOKEN: after.refresh_token() or "",
        }
        assert_logs_show_no_secret(app_logs.records, renewed)  # nor the tokens the refresh brought
    else:
        assert row_state(after) == stored_before  # a failed call changes no stored token
