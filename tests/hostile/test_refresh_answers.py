"""The token endpoint's answer to a refresh, generated: a valid one is stored in the same row, an
``invalid_grant`` forgets the row (the grant is dead), any other is a typed error that leaves the
row as it was; no error or log holds a secret.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from hypothesis import event, given

from django_cloudsync import errors, tokens
from django_cloudsync.models import CloudSyncToken
from tests.hostile.examples import fresh_secrets
from tests.hostile.oracles import (
    Rendered,
    assert_error_shows_no_secret,
    assert_logs_show_no_secret,
    attempt,
    row_state,
    token_endpoint_outcome,
)
from tests.hostile.strategies import HOSTILE, Answer, Secret, token_answers

pytestmark = pytest.mark.django_db

User = get_user_model()


@HOSTILE
@given(answer=token_answers)
def test_no_malformed_refresh_response_raises_untyped_or_changes_the_stored_row(
    hostile_settings: Any,
    connected: Callable[[], CloudSyncToken],
    app_logs: pytest.LogCaptureFixture,
    answer: Answer,
) -> None:
    fake = hostile_settings
    row = connected()
    fake.clear_faults()
    app_logs.clear()
    CloudSyncToken.objects.filter(pk=row.pk).update(expires_at=row.created_at - timedelta(days=1))
    row = CloudSyncToken.objects.get(pk=row.pk)
    secrets = {
        **fresh_secrets(fake),
        Secret.STORED_ACCESS_TOKEN: row.access_token(),
        Secret.STORED_REFRESH_TOKEN: row.refresh_token() or "",
    }
    rendered = Rendered(*answer.render(secrets))
    fake.respond_next("token", rendered.status, rendered.body, rendered.headers)
    outcome = token_endpoint_outcome(rendered)
    before, token_requests = row_state(row), fake.counters["token_requests"]

    refreshed, exc = attempt(lambda: tokens.refresh_if_expired(row))

    event(f"raised {type(exc).__name__}" if exc is not None else "refreshed")
    if exc is not None:
        assert_error_shows_no_secret(exc, secrets)
    if outcome == "invalid_grant":
        assert isinstance(exc, errors.ReauthorizationRequired)
        assert not CloudSyncToken.objects.filter(pk=row.pk).exists()  # forgotten, as documented
    elif outcome == "refused":
        assert exc is not None
        assert not isinstance(exc, errors.ReauthorizationRequired)
        assert row_state(CloudSyncToken.objects.get(pk=row.pk)) == before
    else:
        assert refreshed is not None, repr(exc)
        stored = CloudSyncToken.objects.get(pk=row.pk)
        assert stored.version == refreshed.version == row.version + 1
        assert stored.access_token() == json.loads(rendered.body)["access_token"]
    assert fake.counters["token_requests"] == token_requests + 1
    assert_logs_show_no_secret(app_logs.records, secrets)
