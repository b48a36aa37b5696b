"""The ``cloudsync`` allauth provider."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

from allauth.socialaccount.models import SocialLogin
from allauth.socialaccount.providers.base.constants import AuthProcess
from allauth.socialaccount.providers.base.provider import ProviderAccount, ProviderException
from allauth.socialaccount.providers.oauth2.provider import OAuth2Provider
from django.http import HttpRequest, HttpResponse

from .. import conf, dialect, responses
from ..models import MAX_ACCOUNT_ID_LENGTH
from ..sources import latest_token
from . import app_tokens
from .views import CloudSyncOAuth2Adapter

#: The authorization request's own parameters. allauth lets a login URL's ``?auth_params=`` (and
#: the ``AUTH_PARAMS`` setting) add to the request *and override* whatever it carries; these are
#: this provider's alone: who asks, where the code goes, that it is a code (the authorization
#: code grant only), the CSRF state, the scopes and the PKCE challenge. ``response_mode`` too: the
#: code must come back in the callback's query.
PROTECTED_AUTH_PARAMS = frozenset(
    {
        "client_id",
        "redirect_uri",
        "response_type",
        "response_mode",
        "state",
        "scope",
        "code_challenge",
        "code_challenge_method",
    }
)


class CloudSyncAccount(ProviderAccount):
    def to_str(self) -> str:
        data = self.account.extra_data or {}
        return str(data.get("name") or data.get("email") or self.account.uid)


class CloudSyncProvider(OAuth2Provider):
    id = conf.PROVIDER_ID
    name = "CloudSync"
    account_class = CloudSyncAccount
    oauth2_adapter_class = CloudSyncOAuth2Adapter
    # PKCE (RFC 7636, S256) also stops authorization code injection for a confidential client
    # (RFC 9700 §2.1.1); allauth leaves it off by default, this provider turns it on.
    pkce_enabled_default = True

    @property
    def supports_token_authentication(self) -> bool:  # type: ignore[override]
        """allauth headless's "provider token" flow: an app signs in with its CloudSync access token.

        On unless ``SOCIALACCOUNT_PROVIDERS["cloudsync"]["TOKEN_AUTHENTICATION"]`` is ``False``.
        """
        return conf.token_authentication_enabled()

    def verify_token(self, request: HttpRequest, token: Mapping[str, Any]) -> SocialLogin:
        """Check an app's access token against CloudSync (see :mod:`.app_tokens`)."""
        return app_tokens.verify_app_token(request, self, token)

    def get_default_scope(self) -> list[str]:
        return list(conf.DEFAULT_SCOPE)

    def get_scope(self) -> list[str]:
        scope = super().get_scope()
        # Without offline_access CloudSync issues no refresh token, and the stored grant would
        # die with its first access token.
        if conf.offline_access() and dialect.OFFLINE_ACCESS not in scope:
            scope.append(dialect.OFFLINE_ACCESS)
        return scope

    def redirect(
        self,
        request: HttpRequest,
        process: str,
        next_url: str | None = None,
        data: Any = None,
        **kwargs: Any,
    ) -> HttpResponse:
        scope = kwargs.get("scope")
        if scope is None:
            scope = self.get_scope()
            if kwargs.get("headless"):
                # allauth headless's provider redirect passes no scope: an SPA asks for more in
                # the URL's `scope`, as on allauth's own login view (django_cloudsync.responses
                # tells it to, after a dead grant or for a missing scope).
                asked = responses.requested_scopes(request)
                if asked is None:
                    return responses.invalid_scope(request)
                scope = [*scope, *asked]
        if process == AuthProcess.CONNECT:
            # Incremental authorization: the new grant replaces the stored one, so it must carry
            # what the user granted before as well as the scopes a view asks for now.
            previous = latest_token(request.user)
            if previous is not None:
                scope = [*scope, *previous.scopes]
        kwargs["scope"] = dialect.split_scope(dialect.join_scope(scope))
        # Remember what was asked for: a token response without `scope` was granted exactly
        # that (RFC 6749 §5.1). allauth stashes extra keyword arguments in the state.
        kwargs["requested_scope"] = dialect.join_scope(kwargs["scope"])
        # Whatever the request or the settings say (allauth adds the PKCE challenge after this).
        auth_params = kwargs.get("auth_params")
        if auth_params is None:
            auth_params = self.get_auth_params()
        kwargs["auth_params"] = {
            name: value for name, value in auth_params.items() if name not in PROTECTED_AUTH_PARAMS
        }
        return super().redirect(request, process, next_url=next_url, data=data, **kwargs)

    def extract_uid(self, data: dict[str, Any]) -> str:
        uid = data.get("id")
        if not _storable(uid) or not 0 < len(uid) <= MAX_ACCOUNT_ID_LENGTH:
            raise ProviderException("CloudSync sent a profile without a valid account id")
        return uid

    def extract_common_fields(self, data: dict[str, Any]) -> dict[str, Any]:
        # allauth validates the email and splits `name` into first and last name.
        fields = {key: value for key in ("email", "name") if _storable(value := data.get(key))}
        if not fields.get("name", "").strip() and "@" not in fields.get("email", ""):
            # Nothing to make a username from: older allauth releases give up (a 500) rather
            # than fall back, so offer the account id.
            fields["username"] = data["id"]
        return fields

    def extract_extra_data(self, data: dict[str, Any]) -> dict[str, Any]:
        # Keep the profile, not whatever else the response may carry.
        return {key: value for key in ("id", "email", "name") if _storable(value := data.get(key))}


def _storable(value: Any) -> TypeGuard[str]:
    """A string every database can store (PostgreSQL refuses NUL characters in text)."""
    return isinstance(value, str) and "\x00" not in value


provider_classes = [CloudSyncProvider]
