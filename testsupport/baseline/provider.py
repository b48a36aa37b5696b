"""The baseline provider class, shaped like allauth's ``digitalocean`` provider."""

from __future__ import annotations

from typing import Any

from allauth.socialaccount.providers.base.provider import ProviderAccount
from allauth.socialaccount.providers.oauth2.provider import OAuth2Provider

from . import PROVIDER_ID
from .views import BaselineOAuth2Adapter


class BaselineAccount(ProviderAccount):
    def to_str(self) -> str:
        return str(self.account.extra_data.get("name") or self.account.uid)


class BaselineProvider(OAuth2Provider):
    id = PROVIDER_ID
    name = "CloudSync (allauth-style baseline)"
    account_class = BaselineAccount
    oauth2_adapter_class = BaselineOAuth2Adapter

    def get_default_scope(self) -> list[str]:
        return ["workspaces:read", "offline_access"]

    def extract_uid(self, data: dict[str, Any]) -> str:
        return str(data["id"])

    def extract_common_fields(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"email": data.get("email"), "name": data.get("name")}


provider_classes = [BaselineProvider]
