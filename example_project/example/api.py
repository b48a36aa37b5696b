"""The example's API for its single-page app (``/spa/``): django-ninja with django-cloudsync's glue.

The SPA uses the session cookie; an app would send allauth's ``X-Session-Token``. Either way, a
user without CloudSync (or whose grant died) gets a JSON answer saying how to connect again.
"""

from __future__ import annotations

from typing import Any

from allauth.headless.contrib.ninja.security import x_session_token_auth
from django.http import HttpRequest
from ninja import NinjaAPI
from ninja.security import django_auth

from django_cloudsync.contrib.ninja import CloudSyncAuth, client, install

api = install(NinjaAPI(title="CloudSync example", urls_namespace="example_api"))


@api.get("/workspaces", auth=CloudSyncAuth(x_session_token_auth, django_auth))
def workspaces(request: HttpRequest) -> dict[str, Any]:
    cloudsync = client(request)
    assert cloudsync is not None  # CloudSyncAuth let only connected users in
    return {"workspaces": [workspace.get("name") for workspace in cloudsync.workspaces()]}
