"""All or nothing: a sign-in that fails leaves no user, social account or token row behind.

allauth saves the user, the ``SocialAccount`` and the ``EmailAddress`` rows (and our receivers
the ``CloudSyncToken``) before it signs the browser in, and sends the verification mail in
between. Anything that fails after the first save (an SMTP server that refuses the connection,
a site's adapter, a database error) would otherwise leave a user who exists but never signed in.

The views that complete a sign-in (the OAuth callback and the app's code endpoint) run inside
:func:`sign_in_transaction`. The transaction itself opens only when allauth's login pipeline
starts (its ``pre_social_login`` signal, see :mod:`django_cloudsync.receivers`), after
CloudSync has answered: no database transaction, and so no lock (SQLite keeps a read lock for a
transaction's whole life), is held while the site waits on CloudSync.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount, SocialToken
from django.contrib.auth import get_user_model
from django.db import router, transaction
from django.http import HttpRequest

from ..models import CloudSyncToken

_REQUEST_ATTRIBUTE = "_cloudsync_sign_in_transaction"


class _PendingTransaction:
    """The transactions :func:`open_sign_in_transaction` opened for one request, if any yet."""

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.opened = False


def sign_in_aliases() -> list[str]:
    """Every database a sign-in writes to, each once, as the routers place the models."""
    models = (get_user_model(), SocialAccount, SocialToken, EmailAddress, CloudSyncToken)
    return list(dict.fromkeys(router.db_for_write(model) for model in models))


@contextmanager
def sign_in_transaction(request: HttpRequest) -> Iterator[None]:
    """Commit the sign-in completed inside this block, or roll all of it back if it raises."""
    with ExitStack() as stack:
        # The atomic blocks open later, deeper in the call stack; they are closed here, with the
        # block's exception if there is one (so they roll back), once the view has returned.
        setattr(request, _REQUEST_ATTRIBUTE, _PendingTransaction(stack))
        stack.callback(delattr, request, _REQUEST_ATTRIBUTE)
        yield


def open_sign_in_transaction(request: HttpRequest | None) -> None:
    """Open the transaction of a :func:`sign_in_transaction` block (once; a no-op outside one)."""
    pending: _PendingTransaction | None = getattr(request, _REQUEST_ATTRIBUTE, None)
    if pending is None or pending.opened:
        return
    pending.opened = True
    for alias in sign_in_aliases():
        pending.stack.enter_context(transaction.atomic(using=alias))
