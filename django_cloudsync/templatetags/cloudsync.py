"""``{% cloudsync_login_button %}``: the "Sign in with CloudSync" button."""

from __future__ import annotations

from typing import Any

from django import template

from ..conf import PROVIDER_ID

register = template.Library()


@register.inclusion_tag("cloudsync/login_button.html", takes_context=True)
def cloudsync_login_button(
    context: template.Context,
    process: str = "login",
    next: str | None = None,  # noqa: A002  (the name allauth and Django use)
    scope: str | list[str] | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """Render a form that POSTs to allauth's CloudSync login view (allauth 65 wants a POST).

    ``process="connect"`` connects CloudSync to the signed-in user ("Connect CloudSync").
    ``next`` is where to go afterwards; allauth checks it is on this site. ``scope`` asks for
    scopes beyond ``SCOPE`` (a list or a comma-separated string). Override the template
    ``cloudsync/login_button.html`` to change the markup.
    """
    from django.urls import reverse
    from django.utils.http import urlencode

    if isinstance(scope, (list, tuple)):
        scope = ",".join(scope)
    params = {"process": process}
    if next:
        params["next"] = next
    if scope:
        params["scope"] = scope
    if label is None:
        label = "Connect CloudSync" if process == "connect" else "Sign in with CloudSync"
    return {
        "action": f"{reverse(f'{PROVIDER_ID}_login')}?{urlencode(params)}",
        "label": label,
        "process": process,
        "request": context.get("request"),
        "csrf_token": context.get("csrf_token"),
    }
