"""Mail on sign-up (E011): allauth mails new users a verification link, through a server nobody set up."""

from __future__ import annotations

import warnings
from typing import Any

from django.apps import apps
from django.conf import global_settings, settings
from django.core.checks import CheckMessage, Error, register


@register()
def check_sign_up_mail(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E011: allauth mails every new user a verification link, through an SMTP server nobody set up.

    allauth's default ``ACCOUNT_EMAIL_VERIFICATION`` is ``"optional"``, and Django's default
    ``EMAIL_BACKEND`` is SMTP on ``localhost:25``: on a new site, the first sign-in of every user
    would end in ``ConnectionRefusedError``. Self-contained: it reads allauth's own settings.
    """
    if not (apps.is_installed("allauth.account") and apps.is_installed("allauth.socialaccount")):
        return []  # E004
    from allauth.account import app_settings as account_settings
    from allauth.socialaccount import app_settings as socialaccount_settings

    # A social sign-up verifies by SOCIALACCOUNT_EMAIL_VERIFICATION, which defaults to the account's.
    setting, verification = "SOCIALACCOUNT_EMAIL_VERIFICATION", socialaccount_settings.EMAIL_VERIFICATION
    if verification is None:
        setting, verification = "ACCOUNT_EMAIL_VERIFICATION", account_settings.EMAIL_VERIFICATION
    method = account_settings.EmailVerificationMethod(verification)
    if method == account_settings.EmailVerificationMethod.NONE:
        return []
    provider = getattr(settings, "SOCIALACCOUNT_PROVIDERS", None) or {}
    if (provider.get("cloudsync") or {}).get("VERIFIED_EMAIL") is True:
        return []  # allauth trusts CloudSync's address and sends nothing
    if not _mail_left_at_defaults():
        return []
    return [
        Error(
            f"allauth mails a verification link to every new user ({setting} is "
            f"{method.value!r}), but EMAIL_BACKEND is Django's default SMTP backend on "
            "localhost:25: without a mail server there, every first sign-in fails.",
            hint=f'Set {setting} = "none" (CloudSync already knows who the user is), '
            "or configure mail (EMAIL_BACKEND and EMAIL_HOST, or "
            'EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend" in development). '
            "If a mail server does listen on localhost:25, add 'django_cloudsync.E011' to "
            "SILENCED_SYSTEM_CHECKS.",
            id="django_cloudsync.E011",
        )
    ]


def _mail_left_at_defaults() -> bool:
    """Whether mail goes, as Django's defaults send it, by SMTP to localhost:25."""
    if hasattr(settings, "MAILERS"):
        return False  # Django 6.1 and later: the site configured its mailers (startproject does)
    with warnings.catch_warnings():
        # Django 6.1 deprecates the EMAIL_* settings in favour of MAILERS; without MAILERS they
        # are still what it sends mail by, so they are read here, quietly.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return bool(
            settings.EMAIL_BACKEND == global_settings.EMAIL_BACKEND
            and settings.EMAIL_HOST == global_settings.EMAIL_HOST
            and settings.EMAIL_PORT == global_settings.EMAIL_PORT
        )
