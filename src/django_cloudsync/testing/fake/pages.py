"""The HTML pages of the fake CloudSync's authorization server: the consent page and the error
page. Every value from a request or a user is escaped before it reaches a page.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Final

from django_cloudsync import dialect

from .wsgi import Response, html_response

if TYPE_CHECKING:
    from .oauth import AuthorizeRequest
    from .state import FakeUser

#: What each scope lets the application do, as CloudSync's documentation words it.
SCOPE_MEANINGS: Final = {
    "files:read": "read file contents",
    "files:write": "create and modify files",
    "workspaces:read": "list and view workspaces",
    "workspaces:write": "create and manage workspaces",
    dialect.OFFLINE_ACCESS: "stay connected when you are not using it (refresh tokens)",
}


def render_page(title: str, body: str) -> bytes:
    """A complete, small HTML page; ``body`` must already be escaped."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem}}
button{{font-size:1rem;padding:.4rem 1.2rem;margin-right:.5rem}}</style>
</head>
<body>
<main>
{body}
</main>
</body>
</html>
""".encode()


def error_page(message: str) -> Response:
    """RFC 6749 §4.1.2.1: a client or redirect URI that cannot be trusted gets a page, not a redirect."""
    body = (
        "<h1>Authorization error</h1>\n"
        f"<p>{html.escape(message)}</p>\n"
        "<p>You were not sent back to the application, because it could not be identified safely.</p>"
    )
    return html_response(400, render_page("CloudSync — Authorization error", body))


def consent_body(request: AuthorizeRequest, action: str, users: list[FakeUser], current_user_id: str) -> str:
    """The consent form; every value from the request or a user is escaped."""
    e = html.escape
    if request.scopes:
        items = "".join(
            f"<li><code>{e(scope)}</code> — {e(SCOPE_MEANINGS.get(scope, scope))}</li>\n"
            for scope in request.scopes
        )
        scopes = f"<ul>\n{items}</ul>"
    else:
        scopes = "<p>Only your account id, name and email.</p>"
    options = "".join(
        f'<option value="{e(user.id)}"{" selected" if user.id == current_user_id else ""}>'
        f"{e(user.name)}{f' ({e(user.email)})' if user.email else ''}</option>\n"
        for user in users
    )
    hidden = "".join(
        f'<input type="hidden" name="{e(name)}" value="{e(value)}">\n'
        for name, value in request.hidden_fields().items()
    )
    return f"""<h1>Authorize {e(request.client_id)}</h1>
<p>The application <strong>{e(request.client_id)}</strong> asks to use your CloudSync account:</p>
{scopes}
<form method="post" action="{e(action)}">
{hidden}<p><label for="user">Sign in as</label>
<select id="user" name="user">
{options}</select></p>
<p><button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button></p>
</form>
<p><small>You will be sent back to {e(request.redirect_uri)}. This is the fake CloudSync for
development and tests.</small></p>"""
