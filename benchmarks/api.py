"""API views for the per-request cost figure: DRF and django-ninja views that do not use CloudSync.

The site with django-cloudsync's pieces runs them behind ``CloudSyncMiddleware``, DRF with the
app's ``EXCEPTION_HANDLER`` (``benchmarks/settings.py``) and ninja on an API that went through
``django_cloudsync.contrib.ninja.install()``; the site without them runs the same views without
the middleware and on a ninja API left as ninja makes it. Each framework's views are here only
when it is installed (``settings.API_FRAMEWORKS``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.urls import URLPattern, URLResolver, path

urlpatterns: list[URLPattern | URLResolver] = []

if "rest_framework" in settings.API_FRAMEWORKS:
    from rest_framework.authentication import SessionAuthentication
    from rest_framework.permissions import IsAuthenticated
    from rest_framework.request import Request
    from rest_framework.response import Response
    from rest_framework.views import APIView

    class Untouched(APIView):
        """A signed-in user's view that uses ``request.user``, not CloudSync."""

        authentication_classes = [SessionAuthentication]
        permission_classes = [IsAuthenticated]

        def get(self, request: Request) -> Response:
            return Response({"user": request.user.pk})

    urlpatterns.append(path("bench/drf/untouched/", Untouched.as_view()))

if "ninja" in settings.API_FRAMEWORKS:
    from ninja import NinjaAPI
    from ninja.security import django_auth

    from django_cloudsync.contrib.ninja import install

    def _untouched(request: HttpRequest) -> dict[str, Any]:
        return {"user": request.user.pk}

    with_app = install(NinjaAPI(urls_namespace="bench_ninja_app"))
    without_app = NinjaAPI(urls_namespace="bench_ninja_plain")
    for api in (with_app, without_app):
        api.get("/untouched", auth=django_auth)(_untouched)
    urlpatterns += [path("bench/ninja-app/", with_app.urls), path("bench/ninja-plain/", without_app.urls)]
