"""The views the request benchmarks call: each uses the user, the app or the hand-rolled code."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from django_cloudsync import aclient_for
from django_cloudsync.client import CloudSync

from . import handrolled
from .refresh_worker import describe


def _cloudsync(request: HttpRequest) -> CloudSync | None:
    # The middleware's proxy of the user; Django's stubs know only User and AnonymousUser.
    user: Any = request.user
    client: CloudSync | None = user.cloudsync
    return client


def untouched(request: HttpRequest) -> HttpResponse:
    """Touches neither ``request.user`` nor CloudSync: a static page, a health check."""
    return HttpResponse("ok")


def username(request: HttpRequest) -> HttpResponse:
    """Uses ``request.user``, not ``request.user.cloudsync``: most pages of a site."""
    return HttpResponse(request.user.get_username())


def app_client(request: HttpRequest) -> HttpResponse:
    """Uses ``request.user``, then gets the CloudSync client without calling the API."""
    name = request.user.get_username()
    connected = _cloudsync(request) is not None
    return HttpResponse(f"{name} {connected}")


def handrolled_token(request: HttpRequest) -> HttpResponse:
    """Uses ``request.user``, then reads the stored ``SocialToken`` row without calling the API."""
    name = request.user.get_username()
    connected = handrolled.stored_token(request.user) is not None
    return HttpResponse(f"{name} {connected}")


def app_me(request: HttpRequest) -> HttpResponse:
    """Calls the API once through ``request.user.cloudsync``."""
    client = _cloudsync(request)
    if client is None:
        return HttpResponse("not connected", status=404)
    return HttpResponse(client.me()["id"])


def handrolled_me(request: HttpRequest) -> HttpResponse:
    """Calls the API once the hand-rolled way: stored token, new ``requests.Session``."""
    token = handrolled.stored_token(request.user)
    if token is None:
        return HttpResponse("not connected", status=404)
    return HttpResponse(handrolled.call_me(token)["id"])


# Async views, served under uvicorn by benchmarks.asgi (bench_async.py).


async def async_untouched(request: HttpRequest) -> HttpResponse:
    """An async view that touches neither ``request.user`` nor CloudSync."""
    return HttpResponse("ok")


async def async_username(request: HttpRequest) -> HttpResponse:
    """An async view that uses the user (``await request.auser()``), not CloudSync."""
    user = await request.auser()
    return HttpResponse(user.get_username())


async def async_me(request: Any) -> HttpResponse:
    """Calls the API once through ``await request.user.acloudsync()`` and the client's ``ame()``."""
    client: CloudSync | None = await request.user.acloudsync()
    if client is None:
        return HttpResponse("not connected", status=404)
    me = await client.ame()
    return HttpResponse(me["id"])


async def async_handrolled_me(request: Any) -> HttpResponse:
    """``async_me`` the hand-rolled way: the stored ``SocialToken``, a pooled ``httpx2`` client."""
    token = await handrolled.astored_token(await request.auser())
    if token is None:
        return HttpResponse("not connected", status=404)
    me = await handrolled.acall_me(token)
    return HttpResponse(me["id"])


async def async_sleep(request: Any) -> HttpResponse:
    """``async_me`` with the API call replaced by a sleep of the same length: the thread reference.

    Django runs each request's sync parts (the session, the async ORM) on a thread of that
    request's own while it lasts; this view has them all, and waits without CloudSync.
    """
    client: CloudSync | None = await request.user.acloudsync()
    await asyncio.sleep(float(request.GET.get("seconds", "0.2")))
    return HttpResponse("connected" if client is not None else "not connected")


async def async_gather(request: Any) -> HttpResponse:
    """``n`` API calls at once from one view (``asyncio.gather`` of ``ame()``): what each answered."""
    client: CloudSync | None = await request.user.acloudsync()
    if client is None:
        return HttpResponse("not connected", status=404)
    calls = [_outcome(client.ame()) for _ in range(int(request.GET["n"]))]
    return JsonResponse({"outcomes": dict(Counter(await asyncio.gather(*calls)))})


async def async_handrolled_gather(request: Any) -> HttpResponse:
    """``async_gather`` the hand-rolled way: ``n`` calls of :func:`handrolled.acall_me` at once."""
    token = await handrolled.astored_token(await request.auser())
    if token is None:
        return HttpResponse("not connected", status=404)
    calls = [_outcome(handrolled.acall_me(token)) for _ in range(int(request.GET["n"]))]
    return JsonResponse({"outcomes": dict(Counter(await asyncio.gather(*calls)))})


async def _outcome(call: Awaitable[object]) -> str:
    """``ok``, or how the call failed (class, HTTP status: never a message that could hold a token)."""
    try:
        await call
    except Exception as exc:
        return describe(exc)
    return "ok"


#: The clients each race's coroutines loaded, by race name, until the race runs.
_race_clients: dict[str, list[CloudSync | None]] = {}


async def async_race_load(request: HttpRequest) -> HttpResponse:
    """Load ``n`` clients of user ``user`` with ``aclient_for()``, as ``n`` requests would, and keep them."""
    from django.contrib.auth import get_user_model

    user = await get_user_model().objects.aget(pk=int(request.GET["user"]))
    count = int(request.GET["n"])
    clients = await asyncio.gather(*(aclient_for(user) for _ in range(count)))
    _race_clients[request.GET["race"]] = list(clients)
    return JsonResponse({"loaded": count})


async def async_race_go(request: HttpRequest) -> HttpResponse:
    """Every loaded client calls ``GET /v1/me`` at once; how each call ended (class, HTTP status)."""
    clients = _race_clients.pop(request.GET["race"], [])
    if None in clients:
        return JsonResponse({"outcomes": {"not connected": len(clients)}})
    calls = [_outcome(client.ame()) for client in clients if client is not None]
    return JsonResponse({"outcomes": dict(Counter(await asyncio.gather(*calls)))})
