"""A read-only admin for stored tokens: who, which account, what scope, until when. Never a token."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import CloudSyncToken


@admin.register(CloudSyncToken)
class CloudSyncTokenAdmin(admin.ModelAdmin):
    list_display = ("account_id", "user", "environment", "scope", "expires_at", "refreshed_at")
    list_filter = ("environment",)
    search_fields = ("account_id",)
    list_select_related = ("user",)
    # Listing the fields shown keeps the ciphertexts out of the form, the history and the page.
    fields = ("user", "account_id", "environment", "scope", "expires_at", "refreshed_at", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
