"""One shape for a token response, from the token endpoint to the row."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from allauth.socialaccount.models import SocialAccount, SocialLogin, SocialToken
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import F

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


# Storing a completed sign-in's tokens.

NEXT = TokenResponse(
    access_token="at_test_next", refresh_token="rt_test_next", expires_in=600, scope="files:read"
)


def cloudsync_account(uid: str = "usr_1") -> SocialAccount:
    user = get_user_model().objects.create(username=uid)
    return SocialAccount.objects.create(user=user, provider="cloudsync", uid=uid)


def held_login(
    account: SocialAccount, response: TokenResponse = RESPONSE, *, sealed_for: str = ""
) -> SocialLogin:
    """A completed login of ``account`` whose sealed tokens wait in its state, as allauth hands it over."""
    sociallogin = SocialLogin(account=account)
    sociallogin.state[tokens.HELD_STATE_KEY] = tokens.seal_for_sociallogin(
        response, sealed_for or account.uid
    )
    return sociallogin


@pytest.mark.django_db
@pytest.mark.parametrize("saved", [True, False], ids=["store-tokens", "no-store-tokens"])
def test_a_login_stashed_with_its_tokens_in_the_social_token_stores_them_and_empties_it(saved: bool) -> None:
    # A login stashed in the session before its tokens were held in its state; its SocialToken
    # saved if SOCIALACCOUNT_STORE_TOKENS is on.
    account = cloudsync_account()
    sealed = tokens.seal_for_sociallogin(RESPONSE, account.uid)
    social_token = SocialToken(account=account, token=sealed, token_secret="ignored")
    if saved:
        social_token.save()

    row = tokens.store_from_sociallogin(SocialLogin(account=account, token=social_token))

    assert row is not None
    assert (row.access_token(), row.refresh_token()) == ("at_test_sealed", "rt_test_sealed")
    assert (social_token.token, social_token.token_secret) == ("", "")
    assert list(SocialToken.objects.values_list("token", "token_secret", "expires_at")) == (
        [("", "", None)] if saved else []
    )
    assert tokens.store_from_sociallogin(SocialLogin(account=account, token=social_token)) is None  # once


@pytest.mark.django_db
def test_a_login_with_nothing_held_or_sealed_for_another_account_stores_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    account = cloudsync_account()

    with caplog.at_level(logging.WARNING, logger="django_cloudsync"):
        nothing = tokens.store_from_sociallogin(SocialLogin(account=account))
        foreign = tokens.store_from_sociallogin(held_login(account, sealed_for="usr_2"))

    assert (nothing, foreign) == (None, None)
    assert not CloudSyncToken.objects.exists()
    assert [record.getMessage() for record in caplog.records] == [
        "Ignored an unsealable CloudSync sign-in token for account usr_1"
    ]


def refreshed_before_each_write(row: CloudSyncToken, times: int) -> Callable[..., Any]:
    """A database execute wrapper: ``row`` gets a new version (as a refresh committing between
    the sign-in's read and its write would give it) just before each of the first ``times``
    writes of a token row's ciphertexts."""
    done = 0

    def wrapper(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        nonlocal done
        if done < times and sql.startswith("UPDATE") and "access_token_ciphertext" in sql:
            done += 1
            CloudSyncToken.objects.filter(pk=row.pk).update(version=F("version") + 1)
        return execute(sql, *args)

    return wrapper


def stored_sign_in() -> tuple[SocialAccount, CloudSyncToken]:
    """A CloudSync account and the row its first sign-in stored (``RESPONSE``'s tokens)."""
    account = cloudsync_account()
    row = tokens.store_from_sociallogin(held_login(account))
    assert row is not None
    return account, row


@pytest.mark.django_db
def test_a_sign_in_whose_row_changed_under_it_reads_again_and_its_grant_wins() -> None:
    account, first = stored_sign_in()

    with connection.execute_wrapper(refreshed_before_each_write(first, times=1)):
        row = tokens.store_from_sociallogin(held_login(account, NEXT))

    assert row is not None
    stored = CloudSyncToken.objects.get(pk=first.pk)
    assert stored.access_token() == "at_test_next"
    assert stored.version == row.version == first.version + 2  # the refresh's write, then ours


@pytest.mark.django_db
def test_a_sign_in_whose_row_changes_on_every_attempt_gives_up_typed() -> None:
    account, first = stored_sign_in()

    with (
        connection.execute_wrapper(refreshed_before_each_write(first, times=1000)),
        pytest.raises(errors.CloudSyncError, match="changed too often"),
    ):
        tokens.store_from_sociallogin(held_login(account, NEXT))

    stored = CloudSyncToken.objects.get(pk=first.pk)
    assert stored.access_token() == "at_test_sealed"  # the other writer's row, never overwritten
    assert stored.version == first.version + tokens._STORE_ATTEMPTS
