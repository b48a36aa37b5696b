"""Small views the tests drive, shaped like a site's own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from django.contrib.auth import get_user_model, login, logout
from django.contrib.messages import get_messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import engines
from django.views.decorators.debug import sensitive_variables

from django_cloudsync.decorators import cloudsync_required

if TYPE_CHECKING:
    from django_cloudsync.client import CloudSync
    from django_cloudsync.middleware import UserWithCloudSync


# The stubs type ``request.user`` as a ``User | AnonymousUser``; behind CloudSyncMiddleware it is
# a lazy proxy of either, with ``cloudsync``, which no stub expresses: hence the ignores. The
# pattern is django-htmx's ``HtmxHttpRequest``.


class CloudSyncRequest(HttpRequest):
    """A request behind ``CloudSyncMiddleware``: ``request.user.cloudsync`` is a client or ``None``."""

    user: UserWithCloudSync  # type: ignore[assignment]


class ConnectedUser(Protocol):
    @property
    def cloudsync(self) -> CloudSync: ...


class ConnectedRequest(HttpRequest):
    """A connected user's request (``@cloudsync_required`` let it through): ``cloudsync`` is a client."""

    user: ConnectedUser  # type: ignore[assignment]


_HOME = engines["django"].from_string(
    "{% load cloudsync %}{% if user.cloudsync %}connected{% else %}not connected{% endif %}"
    "{% cloudsync_login_button next='/workspaces/' %}"
)


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse(_HOME.render({"user": request.user}, request))


def workspaces(request: CloudSyncRequest) -> HttpResponse:
    client = request.user.cloudsync
    if client is None:
        return JsonResponse({"connected": False})
    return JsonResponse({"connected": True, "workspaces": client.workspaces()})


@cloudsync_required(scopes=["workspaces:write"])
def needs_write(request: ConnectedRequest) -> HttpResponse:
    return JsonResponse(request.user.cloudsync.post("/v1/workspaces", json={"name": "New"}), status=201)


# request.user.cloudsync, client_for and @cloudsync_required (tests/test_middleware.py,
# tests/test_decorators.py).


def untouched(request: HttpRequest) -> HttpResponse:
    """Never reads request.user."""
    return HttpResponse("ok")


def touches_user(request: HttpRequest) -> HttpResponse:
    """Reads request.user, never request.user.cloudsync."""
    return HttpResponse("signed in" if request.user.is_authenticated else "anonymous")


def cloudsync_state(request: CloudSyncRequest) -> HttpResponse:
    client = request.user.cloudsync
    used_in_if = bool(request.user.cloudsync)  # the way views write it: ``if request.user.cloudsync:``
    return JsonResponse({"is_none": client is None, "truthy": used_in_if})


@cloudsync_required
def connected_only(request: ConnectedRequest) -> HttpResponse:
    return JsonResponse({"scopes": request.user.cloudsync.scopes})


def logout_then_cloudsync(request: CloudSyncRequest) -> HttpResponse:
    before = request.user.cloudsync
    logout(request)
    after = getattr(request.user, "cloudsync", None)  # logout() leaves Django's plain AnonymousUser
    return JsonResponse({"before_is_none": before is None, "after_is_none": after is None})


def login_then_cloudsync(request: CloudSyncRequest) -> HttpResponse:
    """Logs in ``?username=`` mid-request, like a sign-up or impersonation view would."""
    before = request.user.cloudsync
    user = get_user_model().objects.get(username=request.GET["username"])
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    after = request.user.cloudsync
    return JsonResponse(
        {
            "before_is_none": before is None,
            "after_account": after.me()["id"] if after is not None else None,
        }
    )


#: Stands for a decrypted token in a view's locals (tests/test_middleware.py). Built at run time,
#: so that the source lines an error page quotes do not contain it.
SENSITIVE_VALUE_PARTS = ("at_test_", "sensitive-local-never-shown")


@sensitive_variables("token")
def fails_holding_a_secret(request: HttpRequest) -> HttpResponse:
    token = "".join(SENSITIVE_VALUE_PARTS)
    raise RuntimeError(f"failed after reading a token of {len(token)} characters")


def messages_list(request: HttpRequest) -> HttpResponse:
    """The messages waiting for this browser (and so consumed), as a page would show them."""
    return JsonResponse({"messages": [str(message) for message in get_messages(request)]})
