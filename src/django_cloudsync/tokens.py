"""The life of a stored token pair: stored at sign-in, refreshed once per expiry, forgotten.

Refreshing is the delicate part. CloudSync may rotate refresh tokens, and a strict server treats
a second use of a spent refresh token as theft and revokes the grant: so for each account
exactly one worker may refresh at a time, and every other worker must wait and use its result.

* Threads of one process wait on their account's process-local lock (cheap, no database round
  trips; one lock per account, so a stuck account blocks no other).
* Processes and hosts agree on the database: the worker that refreshes claims a short lease on
  the row (``refresh_lease_until``) by a compare-and-swap on ``version``, committed at once; it
  asks CloudSync with no transaction open and writes the new tokens by a second compare-and-swap.
  No database lock is held across the HTTP exchange (on SQLite that would be the whole
  database's write lock). A worker that finds a live lease polls the row and uses the new tokens
  as soon as they land; a claimer that dies leaves a lease that runs out. (The locks, the lease
  and the transactions live in :mod:`~django_cloudsync.locking`.)
* Every wait ends: after ``CLOUDSYNC_LOCK_TIMEOUT``, in :class:`~.errors.RefreshInProgress`
  (or :class:`~.errors.LockTimeout` for a database lock), never a raw database error.
* The row is re-read before anything is decided: if its ``version`` moved on, another worker
  refreshed already, and its tokens are used as they are.
* The writes commit on their own. If the caller is inside a transaction (for example
  ``ATOMIC_REQUESTS``), the refresh runs on a separate connection: a rollback of the view would
  otherwise throw away tokens that CloudSync has already rotated. (SQLite cannot do this: a
  connection cannot commit while another holds an open transaction, so there the refresh joins
  the caller's transaction.)

Faults lose nothing: a timeout, a 5xx or garbage from the token endpoint leaves the row as it
was. Only ``invalid_grant`` forgets the tokens, and then ``reauthorization_required`` is sent.

A sign-in stores its tokens differently: in the caller's transaction (the account allauth just
saved may exist only there), with no lock, by a compare-and-swap on ``version``: if a refresh
commits first, the sign-in re-reads the row and writes again, so the newest grant wins. Two
queries, as allauth's own token storage needs.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import TYPE_CHECKING, NamedTuple

from django.db import router
from django.db.models import QuerySet
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from . import conf, errors, locking, oauth, signals
from .models import CloudSyncToken

if TYPE_CHECKING:
    from allauth.socialaccount.models import SocialLogin

logger = logging.getLogger("django_cloudsync")

__all__ = [
    "RefreshOutcome",
    "SealedGrant",
    "client_credentials",
    "forget",
    "hold_until_completed",
    "is_held",
    "refresh_after_rejection",
    "refresh_if_expired",
    "seal_for_sociallogin",
    "store_from_sociallogin",
    "unseal_sociallogin",
]

# Sign-in: allauth holds the token response until the account is saved, sometimes across
# requests in the session (a pending signup form, an email verification). It only ever holds it
# sealed, and in the login's state rather than its SocialToken, so that SOCIALACCOUNT_STORE_TOKENS
# never saves it either.

_PENDING_PURPOSE = "django_cloudsync.sociallogin"
_STORE_ATTEMPTS = 5
#: Where the sealed token response waits in ``SocialLogin.state`` until allauth completes the flow.
HELD_STATE_KEY = "cloudsync_sealed_grant"
#: Set beside it when allauth's lookup found no ``SocialAccount``: the flow creates the account,
#: so no token row can exist for it yet, and storing is one INSERT without looking for one.
NEW_ACCOUNT_STATE_KEY = "cloudsync_new_account"


class SealedGrant(NamedTuple):
    """What :func:`seal_for_sociallogin` sealed: the token response, when, and for which app."""

    response: oauth.TokenResponse
    issued_at: datetime
    #: The client id of the CloudSync app that obtained the grant ("" for "the site's one app").
    client_id: str


@sensitive_variables("response", "payload")
def seal_for_sociallogin(response: oauth.TokenResponse, account_id: str, *, client_id: str = "") -> str:
    """Seal a token response for allauth's ``SocialLogin``, bound to the CloudSync account.

    ``client_id`` names the CloudSync app that obtained the grant: its refreshes use that app.
    """
    payload = json.dumps({**dataclasses.asdict(response), "issued_at": time.time(), "client_id": client_id})
    return conf.cipher().encrypt(payload, _pending_associated_data(account_id))


@sensitive_variables("sealed", "payload")
def unseal_sociallogin(sealed: str, account_id: str) -> SealedGrant:
    """The grant sealed by :func:`seal_for_sociallogin` for ``account_id``;
    :class:`~.errors.UndecryptableToken` if it was sealed for anything else."""
    payload = json.loads(conf.cipher().decrypt(sealed, _pending_associated_data(account_id)))
    issued_at = datetime.fromtimestamp(payload.pop("issued_at"), tz=dt_timezone.utc)
    client_id = payload.pop("client_id", "")
    return SealedGrant(oauth.TokenResponse(**payload), issued_at, client_id)


def _pending_associated_data(account_id: str) -> bytes:
    return f"{_PENDING_PURPOSE}:{account_id}".encode()


def hold_until_completed(sociallogin: SocialLogin) -> None:
    """Move a CloudSync login's sealed tokens from its ``SocialToken`` into its state.

    Called when allauth has looked the account up and before it decides whether the login or
    connect may proceed (and before ``SOCIALACCOUNT_STORE_TOKENS`` saves the ``SocialToken``):
    from here the tokens wait, sealed, for :func:`store_from_sociallogin`, which runs only
    once allauth completed the flow. A flow that is refused, vetoed or abandoned stores nothing.
    """
    token = sociallogin.token
    if sociallogin.account.provider != conf.PROVIDER_ID or token is None or not token.token:
        return
    sociallogin.state[HELD_STATE_KEY] = token.token
    if sociallogin.account.pk is None:
        sociallogin.state[NEW_ACCOUNT_STATE_KEY] = True
    token.token = token.token_secret = ""
    token.expires_at = None


def is_held(sociallogin: SocialLogin) -> bool:
    """Whether ``sociallogin`` still carries tokens that no completed flow has stored."""
    return bool(sociallogin.state.get(HELD_STATE_KEY))


@sensitive_variables("sealed", "grant")
def store_from_sociallogin(sociallogin: SocialLogin) -> CloudSyncToken | None:
    """Store the tokens of a CloudSync sign-in, connect or re-authorization that allauth completed.

    Called once allauth has saved the ``SocialAccount`` and let the login or connect proceed;
    the tokens are taken out of the login, so a second signal of the same flow stores nothing.
    Re-authorization updates the existing row: new tokens, the newly granted scope, the app that
    obtained them; a missing refresh token keeps the old one. The owner is the account's user.
    """
    account = sociallogin.account
    if account.provider != conf.PROVIDER_ID or account.pk is None:
        return None
    sealed = sociallogin.state.pop(HELD_STATE_KEY, None)
    new_account = bool(sociallogin.state.pop(NEW_ACCOUNT_STATE_KEY, False))
    if not sealed and sociallogin.token is not None and sociallogin.token.token:
        # A login stashed in a session before its tokens were held in its state: take them out
        # of the SocialToken (which SOCIALACCOUNT_STORE_TOKENS may have saved) as well.
        sealed = sociallogin.token.token
        hold_until_completed(sociallogin)
        sociallogin.state.pop(HELD_STATE_KEY, None)
        if sociallogin.token.pk is not None:
            type(sociallogin.token).objects.filter(pk=sociallogin.token.pk).update(
                token="", token_secret="", expires_at=None
            )
    if not sealed:
        return None
    try:
        grant = unseal_sociallogin(sealed, account.uid)
    except errors.UndecryptableToken:
        logger.warning("Ignored an unsealable CloudSync sign-in token for account %s", account.uid)
        return None
    response = grant.response
    if response.scope is None:  # RFC 6749 §5.1: no scope in the answer means the requested scope.
        response = dataclasses.replace(response, scope=sociallogin.state.get("requested_scope"))

    def write() -> CloudSyncToken | None:
        # An account this flow created has no row: the sign-in's one INSERT, without a SELECT.
        row = None if new_account else CloudSyncToken.objects.filter(social_account=account).first()
        if row is None:
            row = CloudSyncToken(social_account=account, account_id=account.uid, client_id=grant.client_id)
            row.set_tokens(response, now=grant.issued_at)
            row.save(force_insert=True)
            return row
        seen = row.version
        if row.client_id != grant.client_id:
            # A refresh token kept from another app's grant would be refreshed with the wrong
            # app's credentials: a grant of another app replaces the old one whole.
            row.refresh_token_ciphertext = ""
        row.client_id = grant.client_id
        row.set_tokens(response, now=grant.issued_at)
        return row if _replace_if_unchanged(row, seen) else None

    # The sign-in writes in the caller's transaction (the SocialAccount allauth just saved may
    # exist only there), without a lock: a compare-and-swap on `version` against a refresh
    # that commits first; then we re-read and write again, so the newest sign-in wins.
    db = router.db_for_write(CloudSyncToken)
    for _attempt in range(_STORE_ATTEMPTS):
        row = locking.with_lock_retries(db, write, atomic=False)
        if row is not None:
            logger.info("Stored CloudSync tokens for account %s (scope: %s)", row.account_id, row.scope)
            return row
    raise errors.CloudSyncError("The CloudSync tokens changed too often to be stored; sign in again")


def _replace_if_unchanged(row: CloudSyncToken, seen_version: int) -> bool:
    """Write ``row``'s tokens if its stored ``version`` is still ``seen_version`` (one UPDATE)."""
    return (
        CloudSyncToken.objects.filter(pk=row.pk, version=seen_version).update(
            client_id=row.client_id,
            access_token_ciphertext=row.access_token_ciphertext,
            refresh_token_ciphertext=row.refresh_token_ciphertext,
            scope=row.scope,
            environment=row.environment,
            expires_at=row.expires_at,
            lifetime=row.lifetime,
            version=row.version,
            updated_at=timezone.now(),
        )
        == 1
    )


# Refresh.


class RefreshOutcome(enum.Enum):
    """What a refresh under the lock found and did."""

    #: The row was deleted meanwhile (disconnected, or another worker got ``invalid_grant``).
    GONE = "gone"
    #: Nothing to do: another worker refreshed while we waited, or there is no refresh token.
    UNCHANGED = "unchanged"
    #: CloudSync refused the grant (or there was nothing to refresh a rejected token with):
    #: the tokens are deleted, and the user must authorize again.
    FORGOTTEN = "forgotten"
    #: New tokens are stored.
    REFRESHED = "refreshed"


def refresh_if_expired(token: CloudSyncToken) -> CloudSyncToken:
    """Return the row with a usable access token, refreshing it first if it is about to expire.

    However many workers call this at once for one account, one refresh happens.
    """
    if not token.is_expiring():
        return token
    # A row without a refresh token is used as it is until it fails (see _claim_and_refresh).
    return _refresh(token, lambda row: row.is_expiring())


def refresh_after_rejection(token: CloudSyncToken) -> CloudSyncToken:
    """CloudSync answered 401 to ``token``'s access token: refresh, unless someone already did."""
    return _refresh(token, lambda row: row.version == token.version, forget_without_refresh_token=True)


def _refresh(
    token: CloudSyncToken,
    should_refresh: Callable[[CloudSyncToken], bool],
    *,
    forget_without_refresh_token: bool = False,
) -> CloudSyncToken:
    # Threads of this process queue on the account's lock, so only one of them claims or polls
    # the row; the others then find its tokens with one read.
    with locking.local_lock(token.account_id, error=errors.RefreshInProgress):
        row, outcome = refresh_once(
            token, should_refresh, forget_without_refresh_token=forget_without_refresh_token
        )
    return _reported(token, row, outcome)


def refresh_once(
    token: CloudSyncToken,
    should_refresh: Callable[[CloudSyncToken], bool],
    *,
    forget_without_refresh_token: bool = False,
) -> tuple[CloudSyncToken | None, RefreshOutcome]:
    """The refresh itself, without the process-local lock: a plain blocking function.

    Re-reads the row; if ``should_refresh`` still says so, claims the refresh with a lease (or
    waits, bounded, for the worker that holds one), asks CloudSync with no transaction open, and
    writes the new tokens by compare-and-swap. Its writes commit whatever the caller's
    transaction does. Raises :class:`~.errors.RefreshInProgress` if another worker's refresh
    outlasts ``CLOUDSYNC_LOCK_TIMEOUT``, and CloudSync's own errors as they are (the row keeps
    its tokens). :func:`refresh_if_expired` runs it under the account's process-local lock; an
    async caller runs it in a thread, under a lock of its own per account.
    """
    db = router.db_for_write(CloudSyncToken)
    try:
        return locking.outside_callers_transaction(
            db, lambda: _claim_and_refresh(db, token, should_refresh, forget_without_refresh_token)
        )
    except errors.CloudSyncError as exc:
        logger.warning("Refreshing the CloudSync token of account %s failed: %s", token.account_id, exc)
        raise


def _claim_and_refresh(
    db: str,
    token: CloudSyncToken,
    should_refresh: Callable[[CloudSyncToken], bool],
    forget_without_refresh_token: bool,
) -> tuple[CloudSyncToken | None, RefreshOutcome]:
    rows = CloudSyncToken.objects.using(db).filter(pk=token.pk)
    patience = locking.Patience(error=errors.RefreshInProgress)
    while True:
        row = rows.first()
        if row is None:  # Forgotten meanwhile (disconnected, or another worker got invalid_grant).
            return None, RefreshOutcome.GONE
        if not should_refresh(row):
            # Another worker refreshed while we waited: use its tokens.
            return row, RefreshOutcome.UNCHANGED
        if not row.refresh_token_ciphertext:
            if not forget_without_refresh_token:
                # Nothing to refresh with: use the token until it fails.
                return row, RefreshOutcome.UNCHANGED
            return _forget_unless_changed(db, rows, row.version)
        if locking.lease_is_live(row.refresh_lease_until):
            # Another worker is asking CloudSync: look again when it may be done, or its lease is.
            until_lease_ends = (row.refresh_lease_until - timezone.now()).total_seconds()  # type: ignore[operator]
            patience.pause(at_most=until_lease_ends)
            continue
        lease = locking.claim_lease(db, rows, row.version, conf.refresh_lease())
        if lease is not None:
            break
        # Another worker claimed it or wrote the row between our read and our claim: read again.
    try:
        row_now, outcome = _refresh_claimed(db, rows, row)
    except BaseException:
        # Faults lose nothing: the row keeps its tokens, and the next worker may try at once.
        locking.release_lease(db, rows, lease)
        raise
    if outcome is RefreshOutcome.UNCHANGED:  # a sign-in wrote meanwhile; the lease is still ours
        locking.release_lease(db, rows, lease)
    return row_now, outcome


@sensitive_variables("refresh_token", "response")
def _refresh_claimed(
    db: str, rows: QuerySet[CloudSyncToken], row: CloudSyncToken
) -> tuple[CloudSyncToken | None, RefreshOutcome]:
    """Ask CloudSync for new tokens for ``row``, whose refresh this worker has claimed."""
    seen = row.version
    refresh_token = row.refresh_token()
    assert refresh_token is not None  # the claim was for a row with a refresh token
    try:
        response = oauth.refresh(refresh_token=refresh_token, **client_credentials(row.client_id))
    except errors.InvalidGrant:
        # We held the lease on this version, so no other worker has refreshed with this refresh
        # token: CloudSync really refused it (revoked, expired, or reused).
        return _forget_unless_changed(db, rows, seen)
    row.set_tokens(response)
    row.refreshed_at = row.updated_at = timezone.now()
    row.refresh_lease_until = None
    written = locking.with_lock_retries(
        db, lambda: rows.filter(version=seen).update(**{field: getattr(row, field) for field in _REFRESHED})
    )
    if written:
        return row, RefreshOutcome.REFRESHED
    # A sign-in stored a newer grant (or a disconnect deleted the row) while we asked CloudSync.
    return _current(rows)


#: What a refresh writes: the tokens and what describes them, and the end of its lease.
_REFRESHED = (
    "access_token_ciphertext",
    "refresh_token_ciphertext",
    "scope",
    "environment",
    "expires_at",
    "lifetime",
    "version",
    "refreshed_at",
    "refresh_lease_until",
    "updated_at",
)


def _forget_unless_changed(
    db: str, rows: QuerySet[CloudSyncToken], seen_version: int
) -> tuple[CloudSyncToken | None, RefreshOutcome]:
    """Delete the row if it still holds the tokens of ``seen_version``; else use what it holds."""
    deleted, _ = locking.with_lock_retries(db, lambda: rows.filter(version=seen_version).delete())
    if deleted:
        return None, RefreshOutcome.FORGOTTEN
    return _current(rows)


def _current(rows: QuerySet[CloudSyncToken]) -> tuple[CloudSyncToken | None, RefreshOutcome]:
    row = rows.first()
    return row, RefreshOutcome.UNCHANGED if row is not None else RefreshOutcome.GONE


def _reported(token: CloudSyncToken, row: CloudSyncToken | None, outcome: RefreshOutcome) -> CloudSyncToken:
    """Log and signal what a refresh did; the row to use, or :class:`~.errors.ReauthorizationRequired`."""
    if outcome is RefreshOutcome.REFRESHED:
        logger.info("Refreshed the CloudSync token of account %s", token.account_id)
        signals.token_refreshed.send(sender=CloudSyncToken, token=row, user=token.user)
    elif outcome is RefreshOutcome.FORGOTTEN:
        logger.warning("CloudSync access of account %s must be authorized again", token.account_id)
        signals.reauthorization_required.send(
            sender=CloudSyncToken, user=token.user, account_id=token.account_id, scopes=token.scopes
        )
    if row is None:
        raise errors.ReauthorizationRequired(scopes=token.scopes)
    return row


def forget(token: CloudSyncToken) -> None:
    """Delete an account's stored tokens: the user must authorize again to use CloudSync."""
    CloudSyncToken.objects.filter(pk=token.pk).delete()
    logger.info("Forgot the CloudSync tokens of account %s", token.account_id)


def client_credentials(client_id: str = "") -> dict[str, str]:
    """The ``client_id`` and ``client_secret`` of the CloudSync app ``client_id``, as the token
    endpoint takes them; with no ``client_id``, of the site's one CloudSync app.

    The app is found among all of allauth's apps (``APPS`` in settings and ``SocialApp`` rows,
    hidden ones and every ``Site``'s included): a grant is refreshed by the app that obtained it
    wherever the refresh runs. :class:`~.errors.ConfigurationError` if there is no such app, or
    more than one with no way to tell them apart.
    """
    # allauth's own list, so SocialApp rows in the database work as well as APPS in settings.
    from allauth.socialaccount.adapter import get_adapter

    # No request: every app counts, not one site's; hidden ones too (a mobile app's grant).
    apps = get_adapter().list_apps(None, provider=conf.PROVIDER_ID, client_id=client_id or None)  # type: ignore[arg-type]
    if not client_id:
        # Rows stored before grants named their app were obtained by the site's one visible app.
        apps = [app for app in apps if not (app.settings or {}).get("hidden")]
    # One client id listed once per Site, with one secret, is one app.
    credentials = {(app.client_id, app.secret) for app in apps}
    if not credentials:
        raise errors.ConfigurationError(
            f"No CloudSync app has the client id {client_id!r}, which obtained this grant: put it "
            "back in SOCIALACCOUNT_PROVIDERS['cloudsync']['APPS'] or the SocialApp table"
            if client_id
            else "No CloudSync app: set SOCIALACCOUNT_PROVIDERS['cloudsync']['APPS']"
        )
    if len(credentials) > 1:
        raise errors.ConfigurationError(
            f"Several CloudSync apps have the client id {client_id!r}, with different secrets"
            if client_id
            else "Several CloudSync apps, and this grant does not say which obtained it: sign in again"
        )
    ((found_id, secret),) = credentials
    return {"client_id": found_id, "client_secret": secret}
