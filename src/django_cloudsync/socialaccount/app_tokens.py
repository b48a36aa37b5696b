"""An app signs a user in with what it got from CloudSync: an access token, or a code and its PKCE verifier.

Both are allauth headless's "provider token" flow for the ``app`` client, and both end the same
way: ``GET /v1/me`` proves whose account it is, and allauth gets a ``SocialLogin`` whose token
is *sealed* exactly as in the redirect flow, so the same signal receivers store it, encrypted,
once the account is saved. Nothing is kept when anything fails, and every refusal is a
:class:`~django.core.exceptions.ValidationError` that allauth answers with HTTP 400 and its
JSON error list.

**An authorization code with PKCE** (:func:`verify_app_code`, the recommended way). The app runs
CloudSync's authorize request itself, in the system browser (RFC 8252), with this site's
``client_id``, its own redirect URI and a PKCE challenge, and posts the code and the verifier
instead of exchanging them. The site exchanges the code with its client secret, so the grant is
the site's own: it comes with a refresh token, and the app never holds a CloudSync token. The
code is taken only for a redirect URI in ``APP_REDIRECT_URIS``: CloudSync sends a code only to
the redirect URI of its authorization request, so the list says which codes reached one of the
site's apps. Without it, anyone could start an authorization request for this site's client with
a redirect URI of their own and a verifier they chose, get a user to approve it, and trade the
code here for a session as that user.

**An access token** (:func:`verify_app_token`). The token is checked before any use: its form,
its environment (a live token is never sent to a sandbox, nor the other way round), then
``GET /v1/me``. Only the access token is taken: the app keeps refreshing its own grant, and two
parties refreshing one rotating grant would each spend the other's refresh token, which CloudSync
treats as theft and answers by revoking the grant. When the access token expires the site asks
the user to authorize it again, through its own redirect flow. CloudSync documents no token
introspection, so ``GET /v1/me`` shows that the token is live and whose it is, not which client
it was issued to: any CloudSync application that holds a user's token could present it here.
Sites that do not need it turn it off with
``SOCIALACCOUNT_PROVIDERS["cloudsync"]["TOKEN_AUTHENTICATION"] = False``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.models import SocialApp, SocialLogin, SocialToken
from allauth.socialaccount.providers.base.provider import ProviderException
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

from .. import conf, dialect, errors, oauth, tokens

if TYPE_CHECKING:
    from .provider import CloudSyncProvider

logger = logging.getLogger("django_cloudsync")

#: The error code of every refusal, as allauth's own providers use it: an app needs one code to
#: know "this token will not do", the message says why.
INVALID_TOKEN = dialect.INVALID_TOKEN
#: CloudSync could not be asked (network, 5xx, garbage): not the app's fault, worth a retry.
CLOUDSYNC_UNAVAILABLE = "cloudsync_unavailable"

_ENVIRONMENT_NAMES = {dialect.LIVE: "live", dialect.TEST: "sandbox"}


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
        response = dataclasses.replace(response, scope=vouched_scope(provider, response.scope))
    except errors.InvalidResponse:
        raise _refused(
            "The token is not a well-formed CloudSync access token, or its scope is not a string."
        ) from None
    expected = conf.site_environment()
    if response.environment is not None and response.environment != expected:
        # Checked before the token goes anywhere: a live token is never sent to a sandbox.
        raise _refused(
            f"This is a {_ENVIRONMENT_NAMES[response.environment]} CloudSync token; "
            f"this site uses CloudSync's {_ENVIRONMENT_NAMES[expected]} environment."
        )
    return _sign_in_with(request, provider, response)


def vouched_scope(provider: CloudSyncProvider, claimed: str | None) -> str | None:
    """The part of an app's claimed scope that is stored with its access token.

    CloudSync reports no scope for an access token (``GET /v1/me`` answers any valid token, and
    there is no introspection), so the claim cannot be verified. Only the scopes this site itself
    asks for (``SCOPE``, the default and ``offline_access``) are kept of it: a claim never adds a
    scope the site's own sign-in would not have asked for, and for those the API stays the judge
    (a token without them is answered ``403 insufficient_scope``). No claim (``None``) is kept as
    unknown. Trusted: the account (``GET /v1/me``) and the site's own settings; not the claim.
    """
    if claimed is None:
        return None
    asked = set(provider.get_scope())
    return dialect.join_scope([scope for scope in dialect.split_scope(claimed) if scope in asked])


@sensitive_variables("token", "code", "code_verifier", "response")
def verify_app_code(request: HttpRequest, token: Mapping[str, Any]) -> SocialLogin:
    """Exchange an app's authorization code and return the ``SocialLogin`` it proves.

    ``token`` is the ``token`` object of the request: ``client_id`` (this site's CloudSync
    client), ``code``, ``code_verifier`` (the PKCE verifier of the app's authorization request)
    and ``redirect_uri`` (the one of that request, listed in ``APP_REDIRECT_URIS``). Everything
    is checked before CloudSync is asked; then one token request and one ``GET /v1/me``.
    """
    provider = _site_provider(request, token.get("client_id"))
    redirect_uris = conf.app_redirect_uris()
    if not redirect_uris:
        raise ValidationError(
            "This site takes no authorization codes from apps: it lists no APP_REDIRECT_URIS.",
            code="token_authentication_not_supported",
        )
    code, code_verifier = token.get("code"), token.get("code_verifier")
    if not isinstance(code, str) or not dialect.TOKEN_PATTERN.fullmatch(code):
        raise _refused("A well-formed authorization `code` is required.")
    if not isinstance(code_verifier, str) or not dialect.PKCE_VALUE_PATTERN.fullmatch(code_verifier):
        raise _refused(
            "A `code_verifier` is required: the PKCE verifier of the authorization request, "
            "43 to 128 characters (RFC 7636)."
        )
    redirect_uri = token.get("redirect_uri")
    if not isinstance(redirect_uri, str) or redirect_uri not in redirect_uris:
        raise _refused("The `redirect_uri` is not one of this site's APP_REDIRECT_URIS.")
    try:
        response = oauth.exchange_code(
            code=code,
            redirect_uri=redirect_uri,
            client_id=provider.app.client_id,
            client_secret=provider.app.secret,
            code_verifier=code_verifier,
        )
    except errors.TokenRequestFailed as exc:
        if exc.error == dialect.INVALID_CLIENT:
            # The site's credentials, not the app's code: the site's operator must act.
            logger.error("CloudSync refused this site's client credentials (invalid_client)")
        raise _refused(
            f"CloudSync did not accept the code ({exc.error or 'refused'}): it is unknown, expired "
            "or already used, or was issued for another redirect_uri or code_verifier."
        ) from None
    except errors.CloudSyncError:
        # The code may be spent even though its answer was lost: the app starts again.
        raise ValidationError(
            "CloudSync could not be asked to exchange the code. Start the sign-in again.",
            code=CLOUDSYNC_UNAVAILABLE,
        ) from None
    return _sign_in_with(request, provider, response)


def _site_provider(request: HttpRequest, client_id: Any) -> CloudSyncProvider:
    """The provider of this site's CloudSync app, looked up as allauth's token endpoint does."""
    if not isinstance(client_id, str) or not client_id:
        raise ValidationError("`client_id` required.", code="client_id_required")
    try:
        return get_adapter().get_provider(request, conf.PROVIDER_ID, client_id=client_id)
    except SocialApp.DoesNotExist:
        raise _refused("The `client_id` is not this site's CloudSync client.") from None


@sensitive_variables("response", "sealed")
def _sign_in_with(
    request: HttpRequest, provider: CloudSyncProvider, response: oauth.TokenResponse
) -> SocialLogin:
    profile = _profile(response.access_token)
    try:
        sociallogin = provider.sociallogin_from_response(request, profile)
    except (ProviderException, ValueError):
        raise ValidationError(
            "CloudSync sent a profile without a valid account id.", code=CLOUDSYNC_UNAVAILABLE
        ) from None
    # As in the redirect flow (views.CloudSyncOAuth2Adapter.complete_login): allauth only ever
    # holds the token sealed, and the signal receivers store it encrypted once the account is saved.
    # As allauth's callback does, the token names its app only if the app is a database row: one
    # from settings (APPS) is unsaved, and SOCIALACCOUNT_STORE_TOKENS would fail to save the token.
    sociallogin.token = SocialToken(
        app=provider.app if provider.app.pk else None,
        token=tokens.seal_for_sociallogin(
            response, sociallogin.account.uid, client_id=provider.app.client_id
        ),
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
