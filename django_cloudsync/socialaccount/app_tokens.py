"""Sign in with a CloudSync access token that an app already holds (allauth headless "provider token").

A mobile or desktop app that ran CloudSync's OAuth flow itself posts its access token to
``/_allauth/app/v1/auth/provider/token``; allauth checks the request's shape and the
``client_id``, then asks :meth:`CloudSyncProvider.verify_token`, which lands here. The token is
checked before any use: its form, its environment (a live token is never sent to a sandbox, nor
the other way round), then ``GET /v1/me`` with it, which proves it is a live CloudSync token and
says whose account it is. What allauth gets back is a ``SocialLogin`` whose token is *sealed*
exactly as in the redirect flow, so the same signal receivers store it, encrypted, once the
account is saved, and nothing is kept when anything fails.

Only the access token is taken. The app's refresh token is not: the app keeps refreshing its own
grant, and two parties refreshing one rotating grant would each spend the other's refresh token,
which CloudSync treats as theft and answers by revoking the grant. When the access token expires
the site asks the user to authorize it again, through its own redirect flow.

What the check cannot prove: CloudSync documents no token introspection, so ``GET /v1/me`` shows
that the token is live and whose it is, not which client it was issued to (the ``client_id`` of
the request only names this site's own app). Any CloudSync application that holds a user's token
could present it here. Sites that do not need app sign-in turn the flow off with
``SOCIALACCOUNT_PROVIDERS["cloudsync"]["TOKEN_AUTHENTICATION"] = False``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from allauth.socialaccount.models import SocialLogin, SocialToken
from allauth.socialaccount.providers.base.provider import ProviderException
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

from .. import conf, dialect, errors, oauth, tokens

if TYPE_CHECKING:
    from .provider import CloudSyncProvider

#: The error code of every refusal, as allauth's own providers use it: an app needs one code to
#: know "this token will not do", the message says why.
INVALID_TOKEN = dialect.INVALID_TOKEN
#: CloudSync could not be asked (network, 5xx, garbage): not the app's fault, worth a retry.
CLOUDSYNC_UNAVAILABLE = "cloudsync_unavailable"

_ENVIRONMENT_NAMES = {dialect.LIVE: "live", dialect.TEST: "sandbox"}


def site_environment() -> str:
    """The CloudSync environment this site talks to: ``"live"`` or ``"test"``.

    ``SOCIALACCOUNT_PROVIDERS["cloudsync"]["ENVIRONMENT"]`` when set; otherwise ``"live"`` when
    ``AUTH_URL`` is CloudSync's production authorization server and ``"test"`` for any other
    server (a sandbox, the fake). A site behind a proxy to production sets ``"live"`` itself.
    """
    configured = conf.provider_settings().get("ENVIRONMENT")
    if configured in (dialect.LIVE, dialect.TEST):  # anything else is check E009
        return str(configured)
    return dialect.LIVE if conf.auth_url() == dialect.DEFAULT_AUTH_URL.rstrip("/") else dialect.TEST


def token_authentication_enabled() -> bool:
    """``TOKEN_AUTHENTICATION`` (default ``True``): whether apps may sign in with their own token."""
    return bool(conf.provider_settings().get("TOKEN_AUTHENTICATION", True))


@sensitive_variables("token", "access_token", "response")
def verify_app_token(
    request: HttpRequest, provider: CloudSyncProvider, token: Mapping[str, Any]
) -> SocialLogin:
    """Check an app's CloudSync access token and return the ``SocialLogin`` it proves.

    ``token`` is the ``token`` object of allauth's request: ``access_token`` (required) and
    ``scope`` (optional: what CloudSync granted the app, space-separated; the API stays the judge
    of what the token may do). Raises :class:`~django.core.exceptions.ValidationError`, which
    allauth answers with HTTP 400 and its JSON error list.
    """
    access_token = token.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        # allauth lets an id_token alone through; CloudSync issues none.
        raise _refused("A CloudSync access_token is required.")
    try:
        response = oauth.TokenResponse.from_json(
            {"access_token": access_token, "token_type": "Bearer", "scope": token.get("scope")}
        )
    except errors.InvalidResponse:
        raise _refused(
            "The token is not a well-formed CloudSync access token, or its scope is not a string."
        ) from None
    expected = site_environment()
    if response.environment is not None and response.environment != expected:
        # Checked before the token goes anywhere: a live token is never sent to a sandbox.
        raise _refused(
            f"This is a {_ENVIRONMENT_NAMES[response.environment]} CloudSync token; "
            f"this site uses CloudSync's {_ENVIRONMENT_NAMES[expected]} environment."
        )
    profile = _profile(access_token)
    try:
        sociallogin = provider.sociallogin_from_response(request, profile)
    except (ProviderException, ValueError):
        raise ValidationError(
            "CloudSync sent a profile without a valid account id.", code=CLOUDSYNC_UNAVAILABLE
        ) from None
    # As in the redirect flow (views.CloudSyncOAuth2Adapter.complete_login): allauth only ever
    # holds the token sealed, and the signal receivers store it encrypted once the account is saved.
    sociallogin.token = SocialToken(
        app=provider.app, token=tokens.seal_for_sociallogin(response, sociallogin.account.uid)
    )
    return sociallogin


@sensitive_variables("access_token")
def _profile(access_token: str) -> dict[str, Any]:
    from ..client import CloudSync

    try:
        return CloudSync(access_token=access_token).me()
    except errors.NotAuthenticated:
        raise _refused("CloudSync did not accept the token: it is unknown, expired or revoked.") from None
    except errors.InsufficientScope:
        raise _refused("CloudSync does not let this token read the account's profile.") from None
    except errors.InvalidResponse:
        raise ValidationError(
            "CloudSync sent an unexpected answer. Try again in a moment.", code=CLOUDSYNC_UNAVAILABLE
        ) from None
    except errors.CloudSyncError:
        # Network errors, 5xx, rate limits: the app may try again; the token was not judged.
        raise ValidationError(
            "CloudSync could not be reached. Try again in a moment.", code=CLOUDSYNC_UNAVAILABLE
        ) from None


def _refused(message: str) -> ValidationError:
    return ValidationError(message, code=INVALID_TOKEN)
