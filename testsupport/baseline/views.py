"""The baseline's OAuth 2.0 views: allauth's stock views, with the two things CloudSync needs.

Like allauth's ``notion`` client, the code exchange posts JSON (CloudSync refuses a form body);
like ``digitalocean``, the profile comes from one GET through allauth's requests session.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.models import SocialApp, SocialLogin, SocialToken
from allauth.socialaccount.providers.oauth2.client import OAuth2Client, OAuth2Error
from allauth.socialaccount.providers.oauth2.views import (
    OAuth2Adapter,
    OAuth2CallbackView,
    OAuth2LoginView,
)
from django.conf import settings
from django.http import HttpRequest

from . import PROVIDER_ID


def _base_url() -> str:
    return str(settings.SOCIALACCOUNT_PROVIDERS[PROVIDER_ID]["URL"])


class BaselineOAuth2Client(OAuth2Client):
    def get_access_token(
        self, code: str, pkce_code_verifier: str | None = None, extra_data: Any = None
    ) -> dict[str, Any]:
        data = {
            "grant_type": "authorization_code",
            "client_id": self.consumer_key,
            "client_secret": self.consumer_secret,
            "code": code,
            "redirect_uri": self.callback_url,
        }
        if pkce_code_verifier:
            data["code_verifier"] = pkce_code_verifier
        # allauth's session carries SOCIALACCOUNT_REQUESTS_TIMEOUT on every request.
        with get_adapter().get_requests_session() as session:
            response = session.post(self.access_token_url, json=data, headers=self.headers)
        if response.status_code not in (HTTPStatus.OK, HTTPStatus.CREATED):
            raise OAuth2Error(f"Error retrieving access token: HTTP {response.status_code}")
        token = response.json()
        if not isinstance(token, dict) or "access_token" not in token:
            raise OAuth2Error("Error retrieving access token: no access_token")
        return token


class BaselineOAuth2Adapter(OAuth2Adapter):
    provider_id = PROVIDER_ID
    client_class = BaselineOAuth2Client

    def __init__(self, request: HttpRequest) -> None:
        super().__init__(request)
        base = _base_url()
        self.authorize_url = base + "/oauth/authorize"
        self.access_token_url = base + "/oauth/token"
        self.profile_url = base + "/v1/me"

    def complete_login(
        self, request: HttpRequest, app: SocialApp, token: SocialToken, **kwargs: Any
    ) -> SocialLogin:
        headers = {"Authorization": f"Bearer {token.token}"}
        with get_adapter().get_requests_session() as session:
            response = session.get(self.profile_url, headers=headers)
            response.raise_for_status()
            extra_data = response.json()
        provider = self.get_provider()  # type: ignore[no-untyped-call]  # allauth is untyped
        login: SocialLogin = provider.sociallogin_from_response(request, extra_data)
        return login


oauth2_login = OAuth2LoginView.adapter_view(BaselineOAuth2Adapter)
oauth2_callback = OAuth2CallbackView.adapter_view(BaselineOAuth2Adapter)
