"""A signed-in user's CloudSync client: ``client_for(user)`` and the token source behind it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.views.decorators.debug import sensitive_variables

from . import tokens
from .models import CloudSyncToken

if TYPE_CHECKING:
    from .client import CloudSync


class StoredTokenSource:
    """The tokens of one :class:`~django_cloudsync.models.CloudSyncToken` row, kept fresh.

    Implements :class:`~django_cloudsync.client.TokenSource`: the client asks it for a token
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


def client_for(user: Any) -> CloudSync | None:
    """The CloudSync client of ``user``'s most recently updated CloudSync account, or ``None``.

    ``None`` for ``None``, an anonymous user, a user not saved yet, or a user who has not
    connected CloudSync. One database query; nothing is decrypted and no HTTP call is made
    until the client is used.
    """
    from .client import CloudSync

    token = latest_token(user)
    if token is None:
        return None
    return CloudSync(token_source=StoredTokenSource(token))


def latest_token(user: Any) -> CloudSyncToken | None:
    """The row of ``user``'s most recently updated CloudSync account (one query), or ``None``."""
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
        .first()
    )
