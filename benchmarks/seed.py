"""Rows the benchmarks start from: users connected both ways, with real tokens from the fake."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from allauth.socialaccount.models import SocialAccount, SocialToken
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.utils import timezone

from django_cloudsync.models import CloudSyncToken
from django_cloudsync.testing import FakeCloudSync
from testsupport.baseline import PROVIDER_ID as BASELINE_PROVIDER_ID

APP_PROVIDER_ID = "cloudsync"


def wipe(alias: str = "default") -> None:
    """Delete every user (their accounts and tokens go with them) and every session."""
    get_user_model().objects.using(alias).all().delete()
    Session.objects.using(alias).all().delete()


def connected_user(fake: FakeCloudSync, account_id: str, *, alias: str = "default") -> Any:
    """A user connected to CloudSync account ``account_id`` twice over, with live tokens:

    through django-cloudsync (a ``CloudSyncToken`` row, encrypted) and through the baseline
    provider as allauth stores it (a ``SocialToken`` row, plaintext).
    """
    if account_id not in {user.id for user in fake.users}:
        fake.add_user(account_id, f"{account_id}@example.com", account_id)
    user = (
        get_user_model()
        .objects.db_manager(alias)
        .create_user(username=account_id, email=f"{account_id}@example.com")
    )
    store_app_tokens(user, fake, account_id, alias=alias)
    store_handrolled_tokens(user, fake, account_id, alias=alias)
    return user


def store_app_tokens(
    user: Any, fake: FakeCloudSync, account_id: str, *, alias: str = "default"
) -> CloudSyncToken:
    account, _ = SocialAccount.objects.using(alias).get_or_create(
        provider=APP_PROVIDER_ID, uid=account_id, defaults={"user": user}
    )
    issued = fake.issue_tokens(user_id=account_id)
    row = CloudSyncToken.objects.using(alias).filter(social_account=account).first()
    if row is None:
        row = CloudSyncToken(social_account=account, account_id=account_id)
    row.set_tokens(
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        expires_in=issued["expires_in"],
        scope=issued["scope"],
    )
    row.save(using=alias)
    return row


def store_handrolled_tokens(
    user: Any, fake: FakeCloudSync, account_id: str, *, alias: str = "default"
) -> SocialToken:
    account, _ = SocialAccount.objects.using(alias).get_or_create(
        provider=BASELINE_PROVIDER_ID, uid=account_id, defaults={"user": user}
    )
    issued = fake.issue_tokens(user_id=account_id)
    token = SocialToken.objects.using(alias).filter(account=account).first() or SocialToken(account=account)
    token.token = issued["access_token"]
    token.token_secret = issued["refresh_token"]
    token.expires_at = timezone.now() + timedelta(seconds=issued["expires_in"])
    token.save(using=alias)
    return token


def expire_all(alias: str = "default") -> None:
    """Make every stored access token, both kinds, expired a second ago."""
    past = timezone.now() - timedelta(seconds=1)
    CloudSyncToken.objects.using(alias).update(expires_at=past)
    SocialToken.objects.using(alias).update(expires_at=past)
