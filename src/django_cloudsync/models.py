"""The one model: a CloudSync account's tokens, encrypted, one row per CloudSync account."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from allauth.socialaccount.models import SocialAccount
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from . import conf, dialect
from .oauth import TokenResponse

MAX_ACCOUNT_ID_LENGTH = 191
MAX_CLIENT_ID_LENGTH = 191  # as allauth's SocialApp.client_id


class CloudSyncToken(models.Model):
    """The access and refresh tokens of one CloudSync account, sealed with AES-GCM.

    The primary key is a UUID chosen before the row is first saved, so every ciphertext can be
    bound to its row from the start: the associated data of each token is the row's id and the
    field's name, and a ciphertext copied anywhere else fails to decrypt. Read and write the
    tokens through :meth:`access_token`, :meth:`refresh_token` and :meth:`set_tokens`; nothing
    else ever sees them in plaintext.
    """

    class Environment(models.TextChoices):
        LIVE = dialect.LIVE, _("live")
        TEST = dialect.TEST, _("sandbox")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    #: The owner is ``social_account.user``, never a copy: when an admin moves the account to
    #: another user, the tokens move with it.
    social_account = models.OneToOneField(
        SocialAccount, on_delete=models.CASCADE, related_name="cloudsync_token"
    )
    account_id = models.CharField(_("CloudSync account id"), max_length=MAX_ACCOUNT_ID_LENGTH, unique=True)
    #: The client id of the CloudSync app that obtained the grant: refreshes use that app's
    #: credentials. Blank (rows stored before it was recorded) means "the site's one app".
    client_id = models.CharField(_("CloudSync app (client id)"), max_length=MAX_CLIENT_ID_LENGTH, blank=True)
    environment = models.CharField(_("environment"), max_length=8, choices=Environment.choices, blank=True)
    scope = models.TextField(_("granted scope"), blank=True, help_text=_("Space-separated."))
    access_token_ciphertext = models.TextField(editable=False)
    refresh_token_ciphertext = models.TextField(editable=False, blank=True)
    expires_at = models.DateTimeField(_("access token expires at"), null=True, blank=True)
    lifetime = models.PositiveIntegerField(
        _("access token lifetime (s)"), null=True, blank=True, help_text=_("expires_in as issued.")
    )
    #: Goes up by one every time new tokens are written: a worker that saw version N and finds
    #: N+1 under the lock knows another worker refreshed, and re-reads instead of refreshing.
    version = models.PositiveIntegerField(default=0, editable=False)
    #: While in the future, one worker is refreshing these tokens: it claimed the refresh by a
    #: compare-and-swap on ``version`` and calls CloudSync with no transaction open; the others
    #: wait for its tokens. A claimer that dies leaves a lease that simply runs out.
    refresh_lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    refreshed_at = models.DateTimeField(_("last refreshed"), null=True, blank=True)
    created_at = models.DateTimeField(_("connected"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("CloudSync token")
        verbose_name_plural = _("CloudSync tokens")

    def __str__(self) -> str:
        return f"{self.account_id} ({self.environment or 'unknown'})"

    @property
    def user(self) -> Any:
        """The user who owns these tokens: whoever owns the ``SocialAccount`` now."""
        return self.social_account.user

    @property
    def user_id(self) -> Any:
        return self.social_account.user_id

    # Tokens: sealed and opened here only.

    def access_token(self) -> str:
        """The access token in plaintext."""
        return conf.cipher().decrypt(self.access_token_ciphertext, self.associated_data("access_token"))

    def refresh_token(self) -> str | None:
        """The refresh token in plaintext, or ``None`` if CloudSync issued none."""
        if not self.refresh_token_ciphertext:
            return None
        return conf.cipher().decrypt(self.refresh_token_ciphertext, self.associated_data("refresh_token"))

    def set_tokens(
        self, response: TokenResponse | None = None, *, now: datetime | None = None, **fields: Any
    ) -> None:
        """Seal a token endpoint's answer into this row (not saved).

        A ``None`` refresh token or scope in the answer keeps the row's. ``fields``
        (``access_token=``, ``refresh_token=``, ``expires_in=``, ``scope=``) stand for a
        response, for callers that have the values but no :class:`~.oauth.TokenResponse`.
        """
        if response is None:
            response = TokenResponse(**fields)
        elif fields:
            raise TypeError("set_tokens() takes a TokenResponse or its fields, not both")
        cipher = conf.cipher()
        now = now or timezone.now()
        self.access_token_ciphertext = cipher.encrypt(
            response.access_token, self.associated_data("access_token")
        )
        if response.refresh_token:
            self.refresh_token_ciphertext = cipher.encrypt(
                response.refresh_token, self.associated_data("refresh_token")
            )
        if response.scope is not None:
            self.scope = response.scope
        self.environment = response.environment or ""
        self.expires_at = now + timedelta(seconds=response.expires_in) if response.expires_in else None
        self.lifetime = response.expires_in
        self.version += 1

    def associated_data(self, field: str) -> bytes:
        """What a ciphertext of ``field`` in this row is bound to: the row's id and the field's name."""
        return f"{self._meta.label_lower}:{self.pk}:{field}".encode()

    # Expiry and scopes.

    @property
    def scopes(self) -> list[str]:
        return dialect.split_scope(self.scope)

    def is_expiring(self, now: datetime | None = None) -> bool:
        """Whether the access token should be refreshed before use.

        The leeway (``CLOUDSYNC_REFRESH_LEEWAY``) is capped at half the token's own lifetime,
        so a token that lives a few seconds is not refreshed on every call.
        """
        if self.expires_at is None:
            return False  # No expiry given: use the token until the API answers 401.
        leeway = conf.refresh_leeway()
        if self.lifetime:
            leeway = min(leeway, self.lifetime / 2)
        return (now or timezone.now()) >= self.expires_at - timedelta(seconds=leeway)
