"""What many test modules do the same way: sign in, let a token expire, read a redirect, look for what a
failed flow must not leave behind."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypedDict
from urllib.parse import parse_qs, urlsplit

from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from django.utils import timezone

from django_cloudsync.models import CloudSyncToken
from django_cloudsync.testing.flow import sign_in

#: The one user the fake knows until a test adds another.
ADA = "usr_ada"
#: ``CLOUDSYNC_MAX_RESPONSE_BYTES`` under the ``hostile_settings`` fixture: low, so that an oversized
#: body is cheap to send.
RESPONSE_LIMIT = 16 * 1024
JSON_HEADERS = [("Content-Type", "application/json")]
#: JSON far deeper than Python's recursion limit, and far below ``RESPONSE_LIMIT``.
NESTED_JSON = b"[" * 5000


class RequestHeaders(TypedDict, total=False):
    """The request headers the tests send, as WSGI environ keys for Django's test ``Client`` and
    ``RequestFactory`` (``client.get(url, **headers)``). A TypedDict rather than ``dict[str, str]``:
    unpacked, a plain dict could be any of the client's own keyword arguments (``follow``,
    ``headers``, ``secure``) as far as mypy knows; these names can only be environ extras."""

    HTTP_ACCEPT: str
    HTTP_AUTHORIZATION: str
    HTTP_X_SESSION_TOKEN: str


def signed_in(client: Any, *, user_id: str | None = None, **kwargs: Any) -> CloudSyncToken:
    """Sign in (or, with ``process="connect"``, connect) through the fake's consent page, as
    ``user_id`` (Ada by default); the token row stored for that CloudSync account."""
    assert sign_in(client, user_id=user_id, **kwargs).status_code == 302
    return CloudSyncToken.objects.get(account_id=user_id or ADA)


def expire(token: CloudSyncToken) -> CloudSyncToken:
    """The stored row, reloaded, with its access token expired a second ago (CloudSync still takes it)."""
    CloudSyncToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    return CloudSyncToken.objects.get(pk=token.pk)


def an_hour_later(token: CloudSyncToken, fake: Any) -> CloudSyncToken:
    """The stored access token has expired, here and at CloudSync."""
    fake.expire_access_tokens()
    return expire(token)


def query_of(url: str) -> dict[str, str]:
    """The first value of each parameter in ``url``'s query string."""
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def error_of(response: Any, status: int, content_type: str = "application/json") -> dict[str, Any]:
    """This app's JSON answer in allauth headless's envelope (:class:`~django_cloudsync.responses.APIAnswer`,
    rendered by Django, DRF or ninja, which names its charset): the status twice, one error, never
    cached; the whole body."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == content_type
    assert "no-cache" in response["Cache-Control"]
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert len(body["errors"]) == 1
    assert set(body["errors"][0]) <= {"code", "message", "param"}
    return body


def nothing_persisted() -> bool:
    """No user, social account or CloudSync token exists: what a refused sign-in leaves."""
    return not (
        get_user_model().objects.exists() or SocialAccount.objects.exists() or CloudSyncToken.objects.exists()
    )


def assert_failure_page(response: Any) -> None:
    """allauth's friendly "Third-Party Login Failure" page (HTTP 401), not a 500."""
    assert response.status_code == 401, response.status_code
    assert b"Third-Party Login Failure" in response.content


def stored_state() -> list[tuple[Any, ...]]:
    """Every stored token row as it is in the database: what a refused flow must leave alone."""
    return list(
        CloudSyncToken.objects.order_by("account_id").values_list(
            "account_id",
            "social_account__user_id",
            "client_id",
            "access_token_ciphertext",
            "refresh_token_ciphertext",
            "scope",
            "expires_at",
            "version",
        )
    )
