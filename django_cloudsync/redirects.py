"""Where to send a user whose CloudSync grant is missing, dead, or too narrow."""

from __future__ import annotations

from collections.abc import Iterable

from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import urlencode

from .conf import PROVIDER_ID


def consent_url(request: HttpRequest, scopes: Iterable[str] = (), *, process: str = "connect") -> str:
    """allauth's CloudSync login URL that asks for ``scopes`` and comes back to this page.

    allauth answers a GET there with a "Continue" page that POSTs (its protection against
    sign-in by a cross-site link), and adds ``SCOPE`` and ``offline_access`` to the scopes.
    """
    params = {"process": process, "next": request.get_full_path()}
    scope = ",".join(dict.fromkeys(scopes))
    if scope:
        params["scope"] = scope
    return f"{reverse(f'{PROVIDER_ID}_login')}?{urlencode(params)}"


def redirect_to_consent(
    request: HttpRequest, scopes: Iterable[str] = (), *, process: str = "connect"
) -> HttpResponseRedirect:
    return HttpResponseRedirect(consent_url(request, scopes, process=process))
