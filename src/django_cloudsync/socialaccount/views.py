"""The OAuth 2.0 dance in CloudSync's dialect, on allauth's own views.

allauth does the authorize redirect, the ``state`` and PKCE bookkeeping, and the login
pipeline. This module only changes what CloudSync does differently: the code exchange is a
JSON body (allauth's client posts a form), the scope order is deterministic (allauth joins a
``set``), and the token response never stays in plaintext longer than the ``/v1/me`` call that
needs it.
"""

from __future__ import annotations

from typing import Any

from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.helpers import render_authentication_error
from allauth.socialaccount.models import SocialApp, SocialLogin, SocialToken
from allauth.socialaccount.providers.base.constants import AuthError
from allauth.socialaccount.providers.base.provider import ProviderException
from allauth.socialaccount.providers.oauth2.client import OAuth2Client, OAuth2Error
from allauth.socialaccount.providers.oauth2.views import (
    OAuth2Adapter,
    OAuth2CallbackView,
    OAuth2LoginView,
)
from django.http import HttpRequest, HttpResponse
from django.utils.http import urlencode
from django.views.decorators.debug import sensitive_variables

from .. import conf, consent, dialect, errors, oauth, receivers, tokens
from .transaction import sign_in_transaction


class CloudSyncOAuth2Client(OAuth2Client):
    def get_redirect_url(self, authorization_url: str, scope: list[str], extra_params: dict[str, Any]) -> str:
        params = {
            # The provider keeps the protected names out of these; ours come after them anyway.
            **extra_params,
            "client_id": self.consumer_key,
            "redirect_uri": self.callback_url,
            "response_type": "code",
            "scope": dialect.join_scope(scope),
        }
        if self.state:
            params["state"] = self.state
        return f"{authorization_url}?{urlencode(params)}"

    @sensitive_variables("code", "pkce_code_verifier")
    def get_access_token(
        self, code: str, pkce_code_verifier: str | None = None, extra_data: Any = None
    ) -> oauth.TokenResponse:
        try:
            return oauth.exchange_code(
                code=code,
                redirect_uri=self.callback_url,
                client_id=self.consumer_key,
                client_secret=self.consumer_secret,
                code_verifier=pkce_code_verifier,
            )
        except errors.CloudSyncError as exc:
            # allauth's callback turns OAuth2Error into its authentication error page.
            raise OAuth2Error(str(exc)) from exc


class CloudSyncOAuth2Adapter(OAuth2Adapter):
    provider_id = conf.PROVIDER_ID
    client_class = CloudSyncOAuth2Client

    # Read at call time, so the URLs follow settings (and override_settings in tests).
    @property
    def authorize_url(self) -> str:
        return conf.auth_url() + dialect.AUTHORIZE_PATH

    @property
    def access_token_url(self) -> str:  # type: ignore[override]
        return conf.auth_url() + dialect.TOKEN_PATH

    def parse_token(self, data: oauth.TokenResponse) -> SocialToken:
        # Only for the /v1/me call below; complete_login seals it before anything keeps it.
        return SocialToken(token=data.access_token)

    @sensitive_variables("token", "response")
    def complete_login(
        self, request: HttpRequest, app: SocialApp, token: SocialToken, **kwargs: Any
    ) -> SocialLogin:
        from ..client import CloudSync

        response: oauth.TokenResponse = kwargs["response"]
        try:
            profile = CloudSync(access_token=token.token).me()
        except errors.CloudSyncError as exc:
            raise ProviderException(str(exc)) from exc
        sociallogin = self.get_provider().sociallogin_from_response(request, profile)
        # From here on allauth may keep the SocialLogin (in the session, while a signup form
        # is pending) or save its SocialToken (SOCIALACCOUNT_STORE_TOKENS): give it a sealed
        # token response only, naming the app that obtained it. Our signal receivers hold it
        # until allauth completes the login or connect, and store it then.
        token.token = tokens.seal_for_sociallogin(response, sociallogin.account.uid, client_id=app.client_id)
        token.token_secret = ""
        token.expires_at = None
        return sociallogin


class CloudSyncCallbackView(OAuth2CallbackView):
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        issuer = request.GET.get("iss")
        if issuer is not None and issuer.rstrip("/") != conf.auth_url():
            # RFC 9207: this authorization response comes from another server (mix-up attack).
            response = render_authentication_error(
                request, self.adapter.get_provider(), error=AuthError.UNKNOWN
            )
        else:
            # allauth's whole pipeline (user, account, email address, tokens, the verification
            # mail, the login) commits together or not at all.
            with sign_in_transaction(request):
                response = super().dispatch(request, *args, **kwargs)
                # allauth sends no signal for a re-connect: its tokens are stored here, if accepted.
                receivers.store_reconnect(
                    request, lambda sociallogin: _is_accepted_connect(request, sociallogin, response)
                )
            # A signed-in user's connect: "CloudSync access was updated" or "not granted".
            response = consent.finish(request, response)
        # The callback URL carries the code: keep it out of the Referer of whatever comes next.
        response["Referrer-Policy"] = "no-referrer"
        return response


def _is_accepted_connect(request: HttpRequest, sociallogin: SocialLogin, response: HttpResponse) -> bool:
    """Whether ``response`` is allauth's answer to a connect it accepted: a redirect to the
    connect's ``next`` (or the connections page), with no ``error`` added for a headless client.
    A refusal, a veto or a reauthentication answers anything else."""
    if response.status_code != 302:
        return False
    if sociallogin.is_headless:
        expected = sociallogin.state.get("next")
    else:
        expected = sociallogin.get_redirect_url(request) or get_adapter().get_connect_redirect_url(
            request, sociallogin.account
        )
    return bool(expected) and response.get("Location") == expected


oauth2_login = OAuth2LoginView.adapter_view(CloudSyncOAuth2Adapter)
oauth2_callback = CloudSyncCallbackView.adapter_view(CloudSyncOAuth2Adapter)
