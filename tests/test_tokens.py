"""One shape for a token response, from the token endpoint to the row."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from django_cloudsync import errors, tokens
from django_cloudsync.models import CloudSyncToken
from django_cloudsync.oauth import TokenResponse

RESPONSE = TokenResponse(
    access_token="at_test_sealed", refresh_token="rt_test_sealed", expires_in=600, scope="files:read"
)


def test_a_sealed_sign_in_opens_for_its_account_only() -> None:
    before = datetime.now(timezone.utc)
    sealed = tokens.seal_for_sociallogin(RESPONSE, "usr_1")

    response, issued_at, _client_id = tokens.unseal_sociallogin(sealed, "usr_1")

    assert response == RESPONSE
    assert before - timedelta(seconds=1) <= issued_at <= datetime.now(timezone.utc)
    assert "at_test_sealed" not in sealed
    with pytest.raises(errors.UndecryptableToken):
        tokens.unseal_sociallogin(sealed, "usr_2")


def test_set_tokens_takes_the_parsed_response() -> None:
    row = CloudSyncToken(pk="00000000-0000-0000-0000-000000000001", account_id="usr_1")
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)

    row.set_tokens(RESPONSE, now=now)

    assert (row.access_token(), row.refresh_token()) == ("at_test_sealed", "rt_test_sealed")
    assert (row.scope, row.environment, row.lifetime, row.version) == ("files:read", "test", 600, 1)
    assert row.expires_at == now + timedelta(seconds=600)


def test_a_response_without_refresh_token_or_scope_keeps_the_rows() -> None:
    row = CloudSyncToken(pk="00000000-0000-0000-0000-000000000002", account_id="usr_1")
    row.set_tokens(RESPONSE)

    row.set_tokens(
        TokenResponse(access_token="at_live_next", refresh_token=None, expires_in=None, scope=None)
    )

    assert (row.access_token(), row.refresh_token()) == ("at_live_next", "rt_test_sealed")
    assert (row.scope, row.environment, row.expires_at, row.version) == ("files:read", "live", None, 2)


def test_set_tokens_takes_a_response_or_its_fields_not_both() -> None:
    row = CloudSyncToken(pk="00000000-0000-0000-0000-000000000003", account_id="usr_1")
    fields: dict[str, Any] = {
        "access_token": "at_test_x",
        "refresh_token": None,
        "expires_in": 60,
        "scope": None,
    }

    row.set_tokens(**fields)

    assert row.access_token() == "at_test_x"
    with pytest.raises(TypeError, match="not both"):
        row.set_tokens(RESPONSE, **fields)
