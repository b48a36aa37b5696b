"""Async views the tests drive (tests/test_async.py), shaped like a site's own."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from django_cloudsync import aclient_for
from django_cloudsync.decorators import cloudsync_required


async def untouched(request: HttpRequest) -> HttpResponse:
    """Never reads request.user."""
    return HttpResponse("ok")


async def state(request: Any) -> HttpResponse:
    client = await request.user.acloudsync()
    again = await request.user.acloudsync()
    return JsonResponse(
        {
            "connected": client is not None,
            "scopes": client.scopes if client is not None else None,
            "cached": again is client and request.user.cloudsync is client,
        }
    )


async def auser(request: Any) -> HttpResponse:
    """``await request.auser()`` answers with a user that has ``acloudsync()``."""
    user = await request.auser()
    client = await user.acloudsync()
    same_as_client_for = (await aclient_for(user)) is not None
    return JsonResponse(
        {
            "authenticated": user.is_authenticated,
            "connected": client is not None,
            "same_as_client_for": same_as_client_for == (client is not None),
        }
    )


async def workspaces(request: Any) -> HttpResponse:
    """Calls CloudSync with the client's async twin (a dead grant escapes to the middleware)."""
    client = await request.user.acloudsync()
    if client is None:
        return JsonResponse({"connected": False})
    return JsonResponse({"connected": True, "workspaces": await client.aworkspaces()})


@cloudsync_required
async def connected_only(request: Any) -> HttpResponse:
    client = await request.user.acloudsync()
    return JsonResponse({"scopes": client.scopes})


@cloudsync_required(scopes=["workspaces:write"])
async def needs_write(request: Any) -> HttpResponse:
    client = await request.user.acloudsync()
    return JsonResponse({"scopes": client.scopes}, status=201)


@cloudsync_required
async def decorated_workspaces(request: Any) -> HttpResponse:
    client = await request.user.acloudsync()
    return JsonResponse({"workspaces": await client.aworkspaces()})
