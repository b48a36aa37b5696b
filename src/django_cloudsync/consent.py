"""Incremental consent in words people understand: the site's own page before CloudSync's.

A signed-in user whom a view sends for more scopes (``@cloudsync_required(scopes=...)``, a dead
grant) first sees ``cloudsync/consent.html``: what is being added, in plain words per scope
(:data:`SCOPE_DESCRIPTIONS`), a button that POSTs (CSRF-protected) and a Cancel link back to
where the user was. The POST is handed to allauth's own CloudSync login view, which redirects to
CloudSync. Back at the callback, :func:`finish` replaces allauth's "account connected" and
"you cancelled logging in" with what happened: CloudSync access was updated, or the permission
was not granted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from allauth.account.adapter import get_adapter as get_account_adapter
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.functional import Promise
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods

from . import conf, dialect
from .models import CloudSyncToken
from .redirects import current_path, safe_next

#: What each scope lets the site do, in the words the consent page uses ("The site wants to ...").
#: A scope not listed here is shown by its name.
SCOPE_DESCRIPTIONS: dict[str, Promise] = {
    "files:read": _("read your files"),
    "files:write": _("create and modify your files"),
    "workspaces:read": _("list and view your workspaces"),
    "workspaces:write": _("create and manage workspaces"),
    dialect.OFFLINE_ACCESS: _("keep access while you are away (refresh tokens)"),
}

#: The session key under which the consent page remembers where to go after CloudSync.
SESSION_KEY = "cloudsync_consent"

TEMPLATE = "cloudsync/consent.html"
ACCESS_UPDATED_MESSAGE = "cloudsync/messages/access_updated.txt"
NOT_GRANTED_MESSAGE = "cloudsync/messages/permission_not_granted.txt"
# allauth's messages for a connect, which say "a new third-party account" where one permission changed.
_ALLAUTH_CONNECT_MESSAGES = (
    "socialaccount/messages/account_connected.txt",
    "socialaccount/messages/account_connected_updated.txt",
)


def describe(scope: str) -> str:
    """``scope`` in plain words (its name if it has none)."""
    return str(SCOPE_DESCRIPTIONS.get(scope, scope))


def consent_url(request: HttpRequest, scopes: Iterable[str], *, next_url: str | None) -> str:
    """The consent page for ``scopes``, coming back to ``next_url``; Cancel goes where the user was.

    Where the user was is the page that linked here (``Referer``, which browsers keep across the
    redirect that sends the user here), when it is on this site and is not ``next_url`` itself
    (which would only send the user here again).
    """
    next_url = safe_next(request, next_url)
    back = _local_path(safe_next(request, request.headers.get("referer")))
    return _page_url(scopes, next_url=next_url, back=back if back != next_url else None)


def _local_path(url: str | None) -> str | None:
    """``url`` (already checked to be on this site) as a path and query, without scheme and host."""
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.path or '/'}?{parts.query}" if parts.query else parts.path or "/"


def _page_url(scopes: Iterable[str], *, next_url: str | None, back: str | None) -> str:
    # allauth's login view, to which the page's POST is handed, reads these from the query string.
    params = {"process": "connect"}
    scope = ",".join(dict.fromkeys(s for s in scopes if s))
    if scope:
        params["scope"] = scope
    if next_url:
        params["next"] = next_url
    if back:
        params["back"] = back
    return f"{reverse(f'{conf.PROVIDER_ID}_consent')}?{urlencode(params)}"


def _requested_scopes(request: HttpRequest) -> list[str]:
    # allauth splits the dynamic scope on commas; accept spaces too, as the decorator does.
    return list(dict.fromkeys(request.GET.get("scope", "").replace(",", " ").split()))


def _scopes_to_add(request: HttpRequest, grant: CloudSyncToken | None) -> list[str]:
    granted = set(grant.scopes) if grant is not None else set()
    asked = _requested_scopes(request)
    if grant is None:
        # Nothing is connected yet: all that CloudSync will be asked for is new.
        asked = [*(conf.provider_settings().get("SCOPE") or conf.DEFAULT_SCOPE), *asked]
    return [
        scope for scope in dict.fromkeys(asked) if scope not in granted and scope != dialect.OFFLINE_ACCESS
    ]


@require_http_methods(["GET", "POST"])
def consent_view(request: HttpRequest) -> HttpResponse:
    """GET: the page. POST (CSRF-checked by the middleware): on to CloudSync through allauth."""
    if not request.user.is_authenticated:
        return redirect_to_login(current_path(request) or resolve_url(settings.LOGIN_REDIRECT_URL))
    next_url = safe_next(request, request.GET.get("next"))
    back = safe_next(request, request.GET.get("back"))
    if request.method == "POST":
        if request.GET.get("process") != "connect":
            return HttpResponseBadRequest("This page only connects CloudSync to the signed-in user.")
        request.session[SESSION_KEY] = {"next": next_url, "back": back}
        # allauth's own CloudSync login view takes it from here: process, scope and next are in
        # the query string, the CSRF token was checked on this POST.
        from .socialaccount.views import oauth2_login

        response: HttpResponse = oauth2_login(request)
        return response
    from .sources import latest_token

    grant = latest_token(request.user)
    context: dict[str, Any] = {
        "scopes": [
            {"name": scope, "description": describe(scope)} for scope in _scopes_to_add(request, grant)
        ],
        "connected": grant is not None,
        # Built again from the checked values: nothing off-site is echoed into the page.
        "action": _page_url(_requested_scopes(request), next_url=next_url, back=back),
        "cancel_url": back or resolve_url(settings.LOGIN_REDIRECT_URL),
    }
    return render(request, TEMPLATE, context)


def finish(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """After the callback of a connect: say what happened to CloudSync access, in those words."""
    pending = request.session.pop(SESSION_KEY, None) if hasattr(request, "session") else None
    if not request.user.is_authenticated:
        return response
    if request.GET.get("error") == "access_denied" and _redirects_to(
        response, "socialaccount_login_cancelled"
    ):
        get_account_adapter(request).add_message(request, messages.WARNING, NOT_GRANTED_MESSAGE)
        pending = pending or {}
        target = pending.get("back") or pending.get("next") or reverse("socialaccount_connections")
        return HttpResponseRedirect(target)
    if pending is not None and getattr(request, "_cloudsync_tokens_stored", False):
        _replace_allauth_connect_message(request)
    return response


def _redirects_to(response: HttpResponse, url_name: str) -> bool:
    return response.status_code == 302 and response.get("Location") == reverse(url_name)


def _replace_allauth_connect_message(request: HttpRequest) -> None:
    allauth_texts = {
        render_to_string(template, {}, request).strip() for template in _ALLAUTH_CONNECT_MESSAGES
    }
    storage = messages.get_messages(request)
    # Reading the messages consumes them; the others are queued again as they were.
    kept = [message for message in storage if str(message.message) not in allauth_texts]
    for message in kept:
        messages.add_message(request, message.level, message.message, extra_tags=message.extra_tags)
    get_account_adapter(request).add_message(request, messages.SUCCESS, ACCESS_UPDATED_MESSAGE)
