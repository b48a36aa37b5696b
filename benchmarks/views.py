"""The views the request benchmarks call: each uses the user, the app or the hand-rolled code."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from django_cloudsync.client import CloudSync

from . import handrolled


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
