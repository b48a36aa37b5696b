"""The yardstick for the sign-in benchmark: a CloudSync provider built the way allauth builds its own.

Nothing in it comes from django-cloudsync: it is what a site would get by copying one of allauth's
built-in OAuth 2.0 providers (``digitalocean`` for the shape, ``notion`` for a JSON token request)
and pointing it at CloudSync. allauth keeps its tokens in ``SocialToken`` rows, in plaintext, when
``SOCIALACCOUNT_STORE_TOKENS`` is on. The sign-in benchmark counts the database queries of its
callback to set the budget for django-cloudsync's own provider (at most two more).
"""

from __future__ import annotations

from typing import Any

PROVIDER_ID = "cloudsync_baseline"


def provider_settings(url: str, client_id: str, secret: str) -> dict[str, Any]:
    """The ``SOCIALACCOUNT_PROVIDERS["cloudsync_baseline"]`` entry for a CloudSync at ``url``."""
    return {"APPS": [{"client_id": client_id, "secret": secret}], "URL": url.rstrip("/")}
