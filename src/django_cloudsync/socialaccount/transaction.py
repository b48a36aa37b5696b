"""All or nothing: a sign-in that fails leaves no user, social account or token row behind.

allauth saves the user, the ``SocialAccount`` and the ``EmailAddress`` rows (and our receivers
the ``CloudSyncToken``) before it signs the browser in, and sends the verification mail in
between. Anything that fails after the first save (an SMTP server that refuses the connection,
a site's adapter, a database error) would otherwise leave a user who exists but never signed in.

The views that complete a sign-in run inside :func:`sign_in_transaction`: ours (the OAuth callback
and the app's code endpoint) by themselves; allauth's own (its headless ``provider/token``
endpoint, and the sign-up forms a pending sign-in ends on) through
:class:`~django_cloudsync.middleware.CloudSyncMiddleware`, see :func:`allauth_sign_in` (on the
sync path: under ASGI, Django runs each sync view in a thread of its own, out of the
middleware's reach). The transaction itself opens only when allauth's login pipeline
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
from django.http import HttpRequest, HttpResponseBase
from django.urls import Resolver404, resolve

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


def _allauth_sign_in_views() -> dict[type, bool]:
    """allauth's views that complete a sign-in, each with whether it may wait on CloudSync first."""
    from allauth.socialaccount.views import SignupView

    views: dict[type, bool] = {SignupView: False}
    try:
        from allauth.headless.socialaccount.views import ProviderSignupView, ProviderTokenView
    except ImportError:  # pragma: no cover - allauth is installed without its headless extra
        return views
    # provider/token asks CloudSync about the token first: its transaction opens at
    # pre_social_login, as the callback's does. A sign-up form only writes.
    views.update({ProviderTokenView: True, ProviderSignupView: False})
    return views


def allauth_sign_in(request: HttpRequest) -> bool | None:
    """Whether ``request`` posts to one of allauth's views that complete a sign-in.

    ``None`` if it does not; else whether that view waits on CloudSync before it writes (then the
    transaction opens at ``pre_social_login``, else at once). Only POSTs complete a sign-in, so
    other requests cost nothing here.
    """
    if request.method != "POST":
        return None
    try:
        view_class = getattr(resolve(request.path_info).func, "view_class", None)
    except Resolver404:
        return None
    # The exact class: our own subclasses (the app code endpoint) wrap themselves.
    return _allauth_sign_in_views().get(view_class)  # type: ignore[arg-type]


def commit_unless_failed(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """Roll back the sign-in transaction of ``request`` if its view answered with a server error.

    Django turns a view's exception into a 500 response before a middleware sees it: the block
    around the view ends without an exception, so the rollback must be asked for.
    """
    pending: _PendingTransaction | None = getattr(request, _REQUEST_ATTRIBUTE, None)
    if pending is not None and pending.opened and response.status_code >= 500:
        for alias in sign_in_aliases():
            transaction.set_rollback(True, using=alias)
    return response
