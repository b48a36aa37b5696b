"""A signed-in user's CloudSync client: ``client_for(user)`` and the token source behind it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet
from django.views.decorators.debug import sensitive_variables

from . import arefresh, tokens
from .models import CloudSyncToken

if TYPE_CHECKING:
    from .client import CloudSync


class StoredTokenSource:
    """The tokens of one :class:`~django_cloudsync.models.CloudSyncToken` row, kept fresh.

    Implements :class:`~django_cloudsync.client.TokenSource` and its async twins
    (``aget_access_token``, ``arefresh_after_rejection``): the client asks it for a token
    before each call, and again after a 401. It holds the row (ciphertexts only) and decrypts
    on demand, so no plaintext token outlives the call that needs it.
    """

    def __init__(self, token: CloudSyncToken) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"<StoredTokenSource {self.token.account_id}>"

    @property
    def environment(self) -> str | None:
        return self.token.environment or None

    @property
    def scopes(self) -> list[str]:
        return self.token.scopes

    @sensitive_variables()
    def get_access_token(self) -> str:
        self.token = tokens.refresh_if_expired(self.token)
        return self.token.access_token()

    @sensitive_variables()
    def refresh_after_rejection(self, rejected_token: str) -> str:
        self.token = tokens.refresh_after_rejection(self.token)
        return self.token.access_token()

    # The async twins (the async client's token source): the same answers, refreshed once per
    # expiry across the coroutines of an event loop as well (see django_cloudsync.arefresh).

    @sensitive_variables()
    async def aget_access_token(self) -> str:
        self.token = await arefresh.arefresh_if_expired(self.token)
        return self.token.access_token()

    @sensitive_variables()
    async def arefresh_after_rejection(self, rejected_token: str) -> str:
        self.token = await arefresh.arefresh_after_rejection(self.token)
        return self.token.access_token()


def client_for(user: Any) -> CloudSync | None:
    """The CloudSync client of ``user``'s most recently updated CloudSync account, or ``None``.

    ``None`` for ``None``, an anonymous user, a user not saved yet, or a user who has not
    connected CloudSync. One database query; nothing is decrypted and no HTTP call is made
    until the client is used.
    """
    return _client_of(latest_token(user))


async def aclient_for(user: Any) -> CloudSync | None:
    """The async twin of :func:`client_for`: the same answer and the same one query, made with
    Django's async ORM, so nothing blocks the event loop."""
    return _client_of(await alatest_token(user))


def latest_token(user: Any) -> CloudSyncToken | None:
    """The row of ``user``'s most recently updated CloudSync account (one query), or ``None``."""
    rows = _latest_token_rows(user)
    return None if rows is None else rows.first()


async def alatest_token(user: Any) -> CloudSyncToken | None:
    """The async twin of :func:`latest_token`."""
    rows = _latest_token_rows(user)
    return None if rows is None else await rows.afirst()


def _latest_token_rows(user: Any) -> QuerySet[CloudSyncToken] | None:
    """The lookup both twins run, or ``None`` for a user who cannot have tokens (no query then)."""
    if user is None or not getattr(user, "is_authenticated", False) or user.pk is None:
        return None
    # Most recently updated: the account signed in, connected or refreshed last. The creation
    # time breaks a tie of equal timestamps, so the choice never depends on the database's mood.
    # The owner is whoever owns the SocialAccount now (an admin may have moved it): joined, and
    # the user fetched along, so `token.user` costs no query of its own.
    return (
        CloudSyncToken.objects.filter(social_account__user=user)
        .select_related("social_account__user")
        .order_by("-updated_at", "-created_at")
    )


def _client_of(token: CloudSyncToken | None) -> CloudSync | None:
    from .client import CloudSync

    return None if token is None else CloudSync(token_source=StoredTokenSource(token))
