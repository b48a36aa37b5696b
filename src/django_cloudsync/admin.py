"""The admin of stored tokens: who, which account, what scope, until when. Never a token.

Read-only: nothing can be added or edited. Two actions act on the selected rows: "Refresh now"
(a forced refresh, as after a 401) and "Forget tokens" (the only way to delete: the user must
authorize CloudSync again). Only the fields listed below are ever rendered, so the ciphertexts
appear in no list, form, history entry or page; and only they can be filtered, searched or
sorted on, so no query string can probe a ciphertext either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import django
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import errors, tokens
from .models import CloudSyncToken

# What the admin shows; the ciphertexts are deliberately absent from every list. The owner is
# the SocialAccount's user (the model's `user`), shown and filtered on through that relation.
_SHOWN_FIELDS = (
    "user",
    "account_id",
    "client_id",
    "environment",
    "scope",
    "expires_at",
    "lifetime",
    "refreshed_at",
    "created_at",
    "updated_at",
)


# The model fields among them (the owner is not one): only these can be filtered on, and the owner
# by these lookups alone, which end at the user's primary key.
_FILTERABLE_FIELDS = tuple(name for name in _SHOWN_FIELDS if name != "user")
_OWNER_LOOKUPS = frozenset(
    f"social_account__{path}"
    for path in ("user", "user__exact", "user__id", "user__id__exact", "user__in", "user__id__in")
)


if TYPE_CHECKING:
    TokenModelAdmin = admin.ModelAdmin[CloudSyncToken]
else:  # ModelAdmin is generic only in django-stubs
    TokenModelAdmin = admin.ModelAdmin


@admin.register(CloudSyncToken)
class CloudSyncTokenAdmin(TokenModelAdmin):
    list_display = ("account_id", "user", "environment", "scope", "expires_at", "refreshed_at")
    list_filter = ("environment",)
    list_select_related = ("social_account__user",)
    fields = _SHOWN_FIELDS
    readonly_fields = _SHOWN_FIELDS
    actions = ["refresh_now", "forget_tokens"]

    def lookup_allowed(self, lookup: str, value: Any, request: HttpRequest | None = None) -> bool:
        # Django lets a query string filter on any local field by default: on a ciphertext,
        # `?access_token_ciphertext__regex=^v1...` recovers it one character at a time from the
        # row count, even for staff who may only view. Only the fields shown can be filtered on.
        if lookup in _OWNER_LOOKUPS:
            return True
        if lookup.split(LOOKUP_SEP, 1)[0] not in _FILTERABLE_FIELDS:
            return False
        if django.VERSION >= (5, 0):  # Django 5.0 gave lookup_allowed() its request argument.
            return super().lookup_allowed(lookup, value, request)  # type: ignore[arg-type]
        # Django 4.2 only: tox's dj42 environments run it, and `make test` combines their data.
        return super().lookup_allowed(lookup, value)  # type: ignore[call-arg]  # pragma: no cover

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        # The user model may be custom: search by whatever identifies its users.
        return ("account_id", f"social_account__user__{get_user_model().USERNAME_FIELD}")

    @admin.display(description=_("user"), ordering="social_account__user")
    def user(self, token: CloudSyncToken) -> Any:
        return token.user

    # Read-only: no add, no change, no delete view. Rows leave only through "Forget tokens".

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_refresh_permission(self, request: HttpRequest) -> bool:
        """Refreshing writes new tokens: it takes the model's change permission."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    def has_forget_permission(self, request: HttpRequest) -> bool:
        """Forgetting deletes the row: it takes the model's delete permission."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.delete_{opts.model_name}")

    # Actions.

    @admin.action(description=_("Refresh now"), permissions=["refresh"])
    def refresh_now(self, request: HttpRequest, queryset: QuerySet[CloudSyncToken]) -> None:
        for token in queryset.select_related("social_account__user"):
            self._refresh_one(request, token)

    def _refresh_one(self, request: HttpRequest, token: CloudSyncToken) -> None:
        account = token.account_id
        if not token.refresh_token_ciphertext:
            self.message_user(
                request,
                _(
                    "%(account)s: CloudSync issued no refresh token (offline_access was not granted), "
                    "so it cannot be refreshed. The user must authorize CloudSync again when the "
                    "access token expires."
                )
                % {"account": account},
                messages.WARNING,
            )
            return
        try:
            # As after a 401: refresh unless another worker has just done it (then use its tokens).
            refreshed = tokens.refresh_after_rejection(token)
        except errors.ReauthorizationRequired:
            self.message_user(
                request,
                _(
                    "%(account)s: CloudSync no longer accepts this refresh token (revoked or expired). "
                    "The tokens were forgotten; the user must authorize CloudSync again."
                )
                % {"account": account},
                messages.WARNING,
            )
            return
        except errors.UndecryptableToken:
            self.message_user(
                request,
                _(
                    "%(account)s: the stored tokens cannot be decrypted with CLOUDSYNC_ENCRYPTION_KEYS "
                    "(was the key that sealed them removed?). Put the key back, or forget the tokens "
                    "so the user authorizes CloudSync again."
                )
                % {"account": account},
                messages.ERROR,
            )
            return
        except errors.ConfigurationError as exc:
            self.message_user(
                request,
                _("%(account)s: not refreshed, django-cloudsync is not configured: %(error)s")
                % {"account": account, "error": exc},
                messages.ERROR,
            )
            return
        except errors.CloudSyncError as exc:
            # str() of these errors is status and error code only, never request data.
            hint = _("Try again later.") if exc.retryable else _("Check the CloudSync app's settings.")
            self.message_user(
                request,
                _("%(account)s: not refreshed, %(error)s. The stored tokens are unchanged. %(hint)s")
                % {"account": account, "error": exc, "hint": hint},
                messages.ERROR,
            )
            return
        self.log_change(request, refreshed, "Refreshed the tokens with CloudSync.")
        expires = refreshed.expires_at.isoformat(timespec="seconds") if refreshed.expires_at else _("never")
        self.message_user(
            request,
            _("%(account)s: refreshed; the new access token expires at %(expires)s.")
            % {"account": account, "expires": expires},
            messages.SUCCESS,
        )

    @admin.action(description=_("Forget tokens (the user must authorize again)"), permissions=["forget"])
    def forget_tokens(self, request: HttpRequest, queryset: QuerySet[CloudSyncToken]) -> None:
        forgotten = list(queryset.select_related("social_account__user"))
        # Logged before the rows go; a log entry keeps the row's str() (account and environment).
        if hasattr(self, "log_deletions"):  # Django 5.1+
            self.log_deletions(request, queryset)
        else:  # pragma: no cover  # Django 4.2 and 5.0: tox's dj42 environments run it
            for token in forgotten:
                self.log_deletion(request, token, str(token))  # type: ignore[attr-defined]
        for token in forgotten:
            tokens.forget(token)
        self.message_user(
            request,
            ngettext(
                "Forgot the tokens of %(count)d CloudSync account (%(accounts)s); "
                "its user must authorize CloudSync again.",
                "Forgot the tokens of %(count)d CloudSync accounts (%(accounts)s); "
                "their users must authorize CloudSync again.",
                len(forgotten),
            )
            % {"count": len(forgotten), "accounts": ", ".join(token.account_id for token in forgotten)},
            messages.SUCCESS,
        )
