"""The endpoint at which an app signs in with an authorization code and its PKCE verifier.

allauth headless's ``provider/token`` endpoint takes an ``access_token`` or an ``id_token`` and
nothing else, so the code goes to this endpoint beside it: allauth's own ``ProviderTokenView``
for the ``app`` client, with another input. The request has the same shape, and the answers are
allauth's: ``200`` with a ``session_token``, ``401`` with a pending ``provider_signup`` flow,
``400`` with allauth's error list; ``X-Session-Token`` works as on every app endpoint (it says
whom ``"process": "connect"`` connects)::

    POST /accounts/cloudsync/app/code
    {"process": "login",
     "token": {"client_id": "...", "code": "...", "code_verifier": "...", "redirect_uri": "..."}}

It lives among the provider's URLs (``/accounts/cloudsync/...`` wherever ``allauth.urls`` is
included) so that a site needs no URL of its own for it. It exists when ``allauth.headless`` is
installed with the ``app`` client; it takes codes once ``APP_REDIRECT_URIS`` names the apps'
redirect URIs (:func:`~.app_tokens.verify_app_code`).
"""

from __future__ import annotations

import json
from typing import Any

from allauth.core import context
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.headless.constants import Client
from allauth.headless.internal.restkit import inputs
from allauth.headless.internal.restkit.response import ErrorResponse
from allauth.headless.socialaccount.views import ProviderTokenView
from allauth.socialaccount.providers.base.constants import AuthProcess
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.urls import path

from .. import conf, receivers
from . import app_tokens
from .transaction import sign_in_transaction


class AppCodeInput(inputs.Input):
    process = inputs.ChoiceField(choices=[(name, name) for name in (AuthProcess.LOGIN, AuthProcess.CONNECT)])
    token = inputs.Field()

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned: dict[str, Any] = self.cleaned_data
        token = self.data.get("token")
        if "token" in cleaned and not isinstance(token, dict):
            self.add_error(
                "token", ValidationError("`token` must be an object.", code=app_tokens.INVALID_TOKEN)
            )
        if cleaned.get("process") == AuthProcess.CONNECT and not context.request.user.is_authenticated:
            # Refused before the code is spent: allauth would only find out after the exchange.
            self.add_error(
                "process",
                ValidationError(
                    "Connecting needs a signed-in user: send the app's X-Session-Token.",
                    code="not_authenticated",
                ),
            )
        if self.errors or not isinstance(token, dict):
            return cleaned  # nothing is sent to CloudSync for a request that is wrong anyway
        try:
            sociallogin = app_tokens.verify_app_code(context.request, token)
        except ValidationError as exc:
            self.add_error("token", exc)
        else:
            sociallogin.state["process"] = cleaned["process"]
            cleaned["sociallogin"] = sociallogin
        return cleaned


class AppCodeView(ProviderTokenView):
    """allauth's provider-token view, given a code where allauth's own takes a token."""

    input_class = AppCodeInput  # type: ignore[assignment]  # allauth names its own input class

    def _parse_json(self, request: HttpRequest) -> dict[str, Any] | None:
        # allauth's own parser answers a body that is not JSON with an empty 400, lets the
        # RecursionError of a deeply nested one through (a 500), and before 65.20 passes on a
        # JSON array or number: every malformed body gets allauth's error list here instead.
        if not request.body:
            return None
        try:
            data = json.loads(request.body.decode())
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise _malformed_body(request, "The body is not JSON (or is nested too deeply).") from None
        if not isinstance(data, dict):
            raise _malformed_body(request, "The body must be a JSON object.")
        return data

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # The code was exchanged while the input was cleaned; what allauth writes from here
        # commits together with the login, or not at all.
        with sign_in_transaction(request):
            response = super().post(request, *args, **kwargs)
            # A refusal raises or answers 4xx; allauth answers an accepted re-connect with 200.
            receivers.store_reconnect(request, lambda sociallogin: response.status_code == 200)
        return response


def _malformed_body(request: HttpRequest, message: str) -> ImmediateHttpResponse:
    return ImmediateHttpResponse(
        response=ErrorResponse(request, exception=ValidationError(message, code="invalid"))
    )


urlpatterns = [
    path(
        f"{conf.PROVIDER_ID}/app/code",
        AppCodeView.as_api_view(client=Client.APP),
        name=f"{conf.PROVIDER_ID}_app_code",
    )
]
