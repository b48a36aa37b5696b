"""API views of the test site: DRF and django-ninja, using django_cloudsync.contrib.

Each framework's views are here only when it is installed (``tests/settings.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.http import HttpRequest
from django.urls import URLPattern, URLResolver, path

if TYPE_CHECKING:
    from tests.views import ConnectedUser

urlpatterns: list[URLPattern | URLResolver] = []

if "rest_framework" in settings.API_FRAMEWORKS:
    from allauth.headless.contrib.rest_framework.authentication import (
        JWTTokenAuthentication,
        XSessionTokenAuthentication,
    )
    from rest_framework.authentication import SessionAuthentication, TokenAuthentication
    from rest_framework.permissions import IsAuthenticated
    from rest_framework.request import Request
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from django_cloudsync.contrib import drf

    class DRFView(APIView):
        # Every way a DRF view can learn its user: the session, allauth headless's session token
        # and JWT, DRF's own token.
        authentication_classes = [
            XSessionTokenAuthentication,
            JWTTokenAuthentication,
            TokenAuthentication,
            SessionAuthentication,
        ]

    class ConnectedAPIRequest(Request):
        """A DRF request ``HasCloudSync`` let through: ``request.user.cloudsync`` is a client (the
        DRF twin of ``tests.views.ConnectedRequest``; the stubs know no ``cloudsync``)."""

        user: ConnectedUser  # type: ignore[assignment]

    class Workspaces(DRFView):
        permission_classes = [drf.HasCloudSync]

        def get(self, request: ConnectedAPIRequest) -> Response:
            return Response({"workspaces": [w["name"] for w in request.user.cloudsync.workspaces()]})

    class NeedsWrite(DRFView):
        # An instance stands for its class (HasCloudSync.__call__ returns it), which the DRF
        # stubs' permission_classes, classes and operand holders only, cannot express.
        permission_classes = [drf.HasCloudSync(scopes=["workspaces:write"])]  # type: ignore[list-item]

        def get(self, request: ConnectedAPIRequest) -> Response:
            return Response({"scopes": request.user.cloudsync.scopes})

    class Untouched(DRFView):
        permission_classes = [IsAuthenticated]

        def get(self, request: Request) -> Response:
            return Response({"user": request.user.pk})

    class ClientOnly(DRFView):
        permission_classes = [IsAuthenticated]

        def get(self, request: Request) -> Response:
            client = drf.client(request)
            if client is None:
                return Response({"connected": False})
            return Response({"connected": True, "workspaces": len(client.workspaces())})

    urlpatterns += [
        path("drf/workspaces/", Workspaces.as_view(), name="drf_workspaces"),
        path("drf/needs-write/", NeedsWrite.as_view(), name="drf_needs_write"),
        path("drf/untouched/", Untouched.as_view(), name="drf_untouched"),
        path("drf/client/", ClientOnly.as_view(), name="drf_client"),
    ]

if "ninja" in settings.API_FRAMEWORKS:
    from allauth.headless.contrib.ninja.security import x_session_token_auth
    from ninja import NinjaAPI
    from ninja.security import django_auth

    from django_cloudsync.contrib import ninja

    api = ninja.install(NinjaAPI(urls_namespace="tests_ninja"))
    either = [x_session_token_auth, django_auth]

    @api.get("/workspaces", auth=ninja.CloudSyncAuth(*either))
    def workspaces(request: HttpRequest) -> dict[str, Any]:
        return {"workspaces": [w["name"] for w in request.user.cloudsync.workspaces()]}  # type: ignore[union-attr]

    @api.get("/needs-write", auth=ninja.CloudSyncAuth(*either, scopes="workspaces:write"))
    def needs_write(request: HttpRequest) -> dict[str, Any]:
        return {"scopes": request.user.cloudsync.scopes}  # type: ignore[union-attr]

    @api.get("/untouched", auth=either)
    def untouched(request: HttpRequest) -> dict[str, Any]:
        return {"user": request.user.pk}

    @api.get("/client", auth=either)
    def client_only(request: HttpRequest) -> dict[str, Any]:
        client = ninja.client(request)
        if client is None:
            return {"connected": False}
        return {"connected": True, "workspaces": len(client.workspaces())}

    @api.get("/client-without-auth")
    def client_without_auth(request: HttpRequest) -> dict[str, Any]:
        # No ninja auth: request.auth is not a user, and the client is that of Django's user.
        return {"connected": ninja.client(request) is not None}

    urlpatterns += [path("ninja/", api.urls)]
