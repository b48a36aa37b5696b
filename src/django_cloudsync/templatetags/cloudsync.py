"""``{% cloudsync_login_button %}``: the "Sign in with CloudSync" button."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import template
from django.middleware.csrf import get_token
from django.utils.translation import gettext

from ..redirects import PROCESSES, login_url

register = template.Library()


@register.inclusion_tag("cloudsync/login_button.html", takes_context=True)
def cloudsync_login_button(
    context: template.Context,
    process: str | None = None,
    next: str | None = None,  # noqa: A002  (the name allauth and Django use)
    scope: str | Iterable[str] | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """Render a form that POSTs to allauth's CloudSync login view (allauth wants a POST).

    ``process`` is ``"login"`` ("Sign in with CloudSync") for an anonymous user and
    ``"connect"`` ("Connect CloudSync": add CloudSync to the account) for a signed-in one, unless
    it is given.
    ``next`` is where to go afterwards; an address off this site is dropped here, and allauth
    checks it again. ``scope`` asks for scopes beyond ``SCOPE`` (a list, or a string separated
    by commas or spaces). ``label`` replaces the button's text, which is also its accessible
    name. Override the template ``cloudsync/login_button.html`` to change the markup; it gets
    ``action``, ``label``, ``process`` and ``csrf_token``.
    """
    request = context.get("request")
    if process is None:
        user = getattr(request, "user", None) or context.get("user")
        process = "connect" if user is not None and user.is_authenticated else "login"
    if process not in PROCESSES:
        raise template.TemplateSyntaxError(
            f"cloudsync_login_button: process must be one of {', '.join(PROCESSES)}, not {process!r}"
        )
    scopes = scope.replace(",", " ").split() if isinstance(scope, str) else [str(s) for s in scope or ()]
    if label is None:
        label = gettext("Connect CloudSync") if process == "connect" else gettext("Sign in with CloudSync")
    csrf_token = context.get("csrf_token")
    if csrf_token is None and request is not None:
        # Rendered without the csrf context processor: the form would be refused without it.
        csrf_token = get_token(request)
    return {
        "action": login_url(request, process=process, next_url=next, scopes=scopes),
        "label": label,
        "process": process,
        "request": request,
        "csrf_token": csrf_token,
    }
