"""Signal receivers: a sign-in in one transaction; its tokens held until allauth completes the
flow, then stored; ``request.user.cloudsync`` again after login.

allauth sends ``social_account_updated`` and ``pre_social_login`` before it decides whether a
login or connect may proceed (the user may be inactive, the account another user's, a site's
adapter may veto it). There the sealed tokens are only *held*, in the login's state
(:func:`~.tokens.hold_until_completed`). They are stored when allauth has completed the flow:

* ``user_logged_in`` with a ``sociallogin`` (a login or signup, also one completed after an
  email verification, from the login allauth stashed in the session);
* ``social_account_added`` (a connect of a new account, once allowed);
* a connect that re-authorizes an account already connected to the signed-in user: allauth sends
  no signal for it, so the provider's views call :func:`store_reconnect` once the flow answered.

A refused, vetoed or abandoned flow stores nothing and changes no stored row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from allauth.account.signals import user_logged_in as allauth_user_logged_in
from allauth.socialaccount.models import SocialLogin
from allauth.socialaccount.providers.base.constants import AuthProcess
from allauth.socialaccount.signals import pre_social_login, social_account_added, social_account_updated
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest

from . import conf, tokens
from .middleware import attach
from .socialaccount.transaction import open_sign_in_transaction

#: The request attribute naming the re-connect that passed ``pre_social_login`` in this request.
_RECONNECT_ATTRIBUTE = "_cloudsync_reconnect"


@receiver(social_account_updated, dispatch_uid="django_cloudsync.hold_on_lookup")
def hold_tokens_of_an_existing_account(sender: Any, sociallogin: SocialLogin, **kwargs: Any) -> None:
    # Sent from allauth's lookup, before SOCIALACCOUNT_STORE_TOKENS saves the SocialToken.
    tokens.hold_until_completed(sociallogin)


@receiver(pre_social_login, dispatch_uid="django_cloudsync.hold_before_decision")
def hold_tokens_until_completed(
    sender: Any, sociallogin: SocialLogin, request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # allauth's pipeline starts: from here until the view returns, its writes commit together.
    open_sign_in_transaction(request)
    tokens.hold_until_completed(sociallogin)
    if request is not None and sociallogin.state.get("process") == AuthProcess.CONNECT:
        # The site's adapter let it through (a veto there raises before this signal).
        setattr(request, _RECONNECT_ATTRIBUTE, sociallogin)


@receiver(allauth_user_logged_in, dispatch_uid="django_cloudsync.store_on_login")
@receiver(social_account_added, dispatch_uid="django_cloudsync.store_on_connect")
def store_completed_sign_in(sender: Any, sociallogin: Any = None, request: Any = None, **kwargs: Any) -> None:
    if isinstance(sociallogin, SocialLogin):
        _store(request, sociallogin)


def _store(request: HttpRequest | None, sociallogin: SocialLogin) -> None:
    if tokens.store_from_sociallogin(sociallogin) is not None and request is not None:
        # The callback tells the user what changed (see consent.finish).
        request._cloudsync_tokens_stored = True  # type: ignore[attr-defined]


def store_reconnect(request: HttpRequest, accepted: Callable[[SocialLogin], bool]) -> None:
    """Store the tokens of a re-connect that allauth accepted in this request, if there was one.

    allauth sends no signal when a signed-in user connects the CloudSync account already
    connected to them (the re-authorization that adds scopes). Its conditions are checked here:
    the user is signed in and owns the account (a connect of another user's account,
    ``connected_other``, stores nothing); ``accepted`` says, from the view's answer, that the
    flow went on to allauth's answer for an accepted connect (no veto, no reauthentication).
    One gap remains: a ``pre_social_login`` receiver connected after this app's that vetoes with
    the very answer of an accepted connect cannot be told from one.
    """
    sociallogin = getattr(request, _RECONNECT_ATTRIBUTE, None)
    if sociallogin is None:
        return
    delattr(request, _RECONNECT_ATTRIBUTE)
    if not tokens.is_held(sociallogin) or not accepted(sociallogin):
        return
    user = getattr(request, "user", None)
    account = sociallogin.account
    if (
        account.provider == conf.PROVIDER_ID
        and user is not None
        and user.is_authenticated
        and account.pk is not None
        and account.user_id == user.pk
    ):
        _store(request, sociallogin)


@receiver(user_logged_in, dispatch_uid="django_cloudsync.rewrap_user_after_login")
def rewrap_user_after_login(sender: Any, request: Any = None, **kwargs: Any) -> None:
    # login() put a plain user on the request: give it request.user.cloudsync again (free).
    if request is not None and hasattr(request, "user"):
        attach(request)
