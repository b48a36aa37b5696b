"""The example's pages: everything CloudSync goes through ``request.user.cloudsync``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib import messages
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_http_methods

from django_cloudsync import errors
from django_cloudsync.decorators import cloudsync_required
from django_cloudsync.sources import latest_token

# What to tell a person for each error a CloudSync call can raise. ReauthorizationRequired is
# not here: CloudSyncMiddleware turns it into a trip through CloudSync's consent page.
FRIENDLY_ERRORS: list[tuple[type[errors.CloudSyncError], str]] = [
    (errors.InsufficientScope, "Your CloudSync grant does not allow this. Connect again with more access."),
    (errors.RateLimited, "CloudSync asks us to slow down. Try again in a minute."),
    (errors.NotAuthenticated, "CloudSync did not accept our access. Try signing in again."),
    (errors.NetworkError, "CloudSync could not be reached. Try again in a moment."),
    (errors.ServerError, "CloudSync is having trouble. Try again in a moment."),
    (errors.InvalidResponse, "CloudSync sent something unexpected. Try again in a moment."),
    (errors.CloudSyncError, "Something went wrong talking to CloudSync."),
]


def friendly_message(exc: errors.CloudSyncError) -> str:
    return next(message for kind, message in FRIENDLY_ERRORS if isinstance(exc, kind))


def home(request: HttpRequest) -> HttpResponse:
    context: dict[str, Any] = {}
    client = request.user.cloudsync
    if client is not None:
        try:
            context["workspaces"] = client.workspaces()
        except errors.ReauthorizationRequired:
            raise
        except errors.CloudSyncError as exc:
            context["error"] = friendly_message(exc)
        context["token"] = latest_token(request.user)
    return render(request, "example/home.html", context)


def workspaces_json(request: HttpRequest) -> JsonResponse:
    """The same data for scripts (the soak test reads it): errors by kind, never a 500."""
    client = request.user.cloudsync
    if client is None:
        return JsonResponse({"error": "not_connected"}, status=403)
    try:
        workspaces = client.workspaces()
    except errors.ReauthorizationRequired:
        raise  # the middleware sends the user through CloudSync's consent
    except errors.CloudSyncError as exc:
        status = 503 if exc.retryable else 502
        return JsonResponse({"error": type(exc).__name__, "message": friendly_message(exc)}, status=status)
    return JsonResponse({"workspaces": [workspace.get("id") for workspace in workspaces]})


@require_http_methods(["GET", "POST"])
@cloudsync_required(scopes=["workspaces:write"])
def new_workspace(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        name = request.POST.get("name", "").strip()[:100]
        if not name:
            messages.error(request, "Give the workspace a name.")
        else:
            try:
                workspace = request.user.cloudsync.post("/v1/workspaces", json={"name": name})
            except errors.ReauthorizationRequired:
                raise
            except errors.CloudSyncError as exc:
                messages.error(request, friendly_message(exc))
            else:
                messages.success(request, f"Created the workspace “{workspace.get('name', name)}”.")
                return redirect("home")
    return render(request, "example/new_workspace.html")


@ensure_csrf_cookie  # the SPA posts allauth's provider redirect form with it
def spa(request: HttpRequest) -> FileResponse:
    """The single-page app: a static file, no template (``static/example/spa.html``)."""
    return FileResponse((Path(__file__).parent / "static" / "example" / "spa.html").open("rb"))


@cloudsync_required
async def async_workspaces(request: Any) -> HttpResponse:
    """The workspace list as an ``async def`` view (serve it with ``uvicorn example.asgi:application``).

    ``await request.user.acloudsync()`` is ``request.user.cloudsync`` for async views: the same
    client, the token row read by Django's async ORM; ``aworkspaces()`` is the async twin of
    ``workspaces()``. Nothing blocks the event loop, and no thread waits for CloudSync.
    """
    client = await request.user.acloudsync()
    context: dict[str, Any] = {}
    try:
        context["workspaces"] = await client.aworkspaces()
    except errors.ReauthorizationRequired:
        raise  # the decorator sends the user through CloudSync's consent and back here
    except errors.CloudSyncError as exc:
        context["error"] = friendly_message(exc)
    return render(request, "example/async_workspaces.html", context)
