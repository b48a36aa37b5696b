"""The hand-rolled alternative: what a site writes without django-cloudsync.

allauth keeps the tokens (``SOCIALACCOUNT_STORE_TOKENS = True``) in ``SocialToken`` rows, in
plaintext; the view reads the row, refreshes it when it has expired (no lock: nothing tells a
site it needs one), and calls the API with a new ``requests.Session`` each time. Every call has
a timeout, so the comparison is with a careful hand-rolled version, not a careless one.

Its async views are as careful: the row read with the async ORM, and one pooled
``httpx2.AsyncClient`` per event loop, as large as the app's pool, so that what the app adds to
the HTTP library (policy, bounds, typed errors) is what the comparison shows.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx2
import requests
from allauth.socialaccount.models import SocialToken
from django.conf import settings
from django.utils import timezone

from django_cloudsync import conf
from testsupport.baseline import PROVIDER_ID

TIMEOUT = (5.0, 10.0)
REFRESH_LEEWAY = timedelta(seconds=60)


def _provider() -> dict[str, Any]:
    return dict(settings.SOCIALACCOUNT_PROVIDERS[PROVIDER_ID])


def stored_token(user: Any) -> SocialToken | None:
    """The user's stored token row: one query, like ``request.user.cloudsync``."""
    return SocialToken.objects.filter(account__user=user, account__provider=PROVIDER_ID).first()


def access_token(token: SocialToken, save: Callable[[SocialToken], None] | None = None) -> str:
    """The access token, refreshed first if it has (nearly) expired. ``save`` writes the row."""
    if token.expires_at is not None and token.expires_at <= timezone.now() + REFRESH_LEEWAY:
        refresh(token, save=save)
    return token.token


def refresh(token: SocialToken, save: Callable[[SocialToken], None] | None = None) -> None:
    """``grant_type=refresh_token`` in CloudSync's JSON dialect; stores the answer in the row."""
    provider = _provider()
    app = provider["APPS"][0]
    with requests.Session() as session:
        response = session.post(
            provider["URL"] + "/oauth/token",
            json={
                "grant_type": "refresh_token",
                "client_id": app["client_id"],
                "client_secret": app["secret"],
                "refresh_token": token.token_secret,
            },
            timeout=TIMEOUT,
        )
    response.raise_for_status()
    data = response.json()
    token.token = data["access_token"]
    token.token_secret = data.get("refresh_token") or token.token_secret
    token.expires_at = timezone.now() + timedelta(seconds=int(data["expires_in"]))
    if save is not None:
        save(token)
    else:
        token.save()


def call_me(token: SocialToken, save: Callable[[SocialToken], None] | None = None) -> dict[str, Any]:
    """``GET /v1/me`` on a new session, as a view that builds its own client each time does."""
    bearer = access_token(token, save=save)
    with requests.Session() as session:
        response = session.get(
            _provider()["URL"] + "/v1/me", headers={"Authorization": f"Bearer {bearer}"}, timeout=TIMEOUT
        )
    response.raise_for_status()
    data = response.json()
    if not isinstance(data, dict):
        raise ValueError("GET /v1/me did not answer a JSON object")
    return data


#: Each event loop's pooled client (the loop of a uvicorn worker lives as long as the worker).
_loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx2.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


async def astored_token(user: Any) -> SocialToken | None:
    """:func:`stored_token` through the async ORM."""
    return await SocialToken.objects.filter(account__user=user, account__provider=PROVIDER_ID).afirst()


async def acall_me(token: SocialToken) -> dict[str, Any]:
    """``GET /v1/me`` on the loop's pooled client, with the stored token as it is (no refresh)."""
    loop = asyncio.get_running_loop()
    client = _loop_clients.get(loop)
    if client is None:
        size = conf.async_max_connections()  # the app's pool size
        limits = httpx2.Limits(max_connections=size, max_keepalive_connections=size)
        timeout = httpx2.Timeout(TIMEOUT[1], connect=TIMEOUT[0])
        client = _loop_clients[loop] = httpx2.AsyncClient(limits=limits, timeout=timeout)
    bearer = {"Authorization": f"Bearer {token.token}"}
    response = await client.get(_provider()["URL"] + "/v1/me", headers=bearer)
    response.raise_for_status()
    data = response.json()
    if not isinstance(data, dict):
        raise ValueError("GET /v1/me did not answer a JSON object")
    return data
