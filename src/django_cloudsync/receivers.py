"""Signal receivers: a sign-in in one transaction; its tokens stored once allauth saved the
account; ``request.user.cloudsync`` again after login.

These are the points at which allauth itself saves ``SocialToken`` rows: an existing account
signing in or re-authorizing (``social_account_updated``), an account connected to a signed-in
user (``social_account_added``), and a new user signing up (``user_signed_up``).
"""

from __future__ import annotations

from typing import Any

from allauth.account.signals import user_signed_up
from allauth.socialaccount.signals import pre_social_login, social_account_added, social_account_updated
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from . import tokens
from .middleware import attach
from .socialaccount.provider import empty_allauth_token
from .socialaccount.transaction import open_sign_in_transaction


@receiver(pre_social_login, dispatch_uid="django_cloudsync.open_sign_in_transaction")
def open_transaction_for_sign_in(sender: Any, request: Any = None, **kwargs: Any) -> None:
    # allauth's pipeline starts: from here until the view returns, its writes commit together.
    open_sign_in_transaction(request)


@receiver(social_account_updated, dispatch_uid="django_cloudsync.store_on_update")
@receiver(social_account_added, dispatch_uid="django_cloudsync.store_on_add")
@receiver(user_signed_up, dispatch_uid="django_cloudsync.store_on_signup")
def store_sign_in_tokens(sender: Any, sociallogin: Any = None, request: Any = None, **kwargs: Any) -> None:
    if sociallogin is None:
        return
    stored = tokens.store_from_sociallogin(sociallogin)
    empty_allauth_token(sociallogin)  # with SOCIALACCOUNT_STORE_TOKENS, allauth saves it too
    if stored is not None and request is not None:
        # The callback tells the user what changed (see consent.finish).
        request._cloudsync_tokens_stored = True


@receiver(user_logged_in, dispatch_uid="django_cloudsync.rewrap_user_after_login")
def rewrap_user_after_login(sender: Any, request: Any = None, **kwargs: Any) -> None:
    # login() put a plain user on the request: give it request.user.cloudsync again (free).
    if request is not None and hasattr(request, "user"):
        attach(request)
