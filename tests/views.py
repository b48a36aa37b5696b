"""Small views the tests drive, shaped like a site's own."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import engines

from django_cloudsync.decorators import cloudsync_required

_HOME = engines["django"].from_string(
    "{% load cloudsync %}{% if user.cloudsync %}connected{% else %}not connected{% endif %}"
    "{% cloudsync_login_button next='/workspaces/' %}"
)


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse(_HOME.render({"user": request.user}, request))


def workspaces(request: HttpRequest) -> HttpResponse:
    client = request.user.cloudsync
    if client is None:
        return JsonResponse({"connected": False})
    return JsonResponse({"connected": True, "workspaces": client.workspaces()})


@cloudsync_required(scopes=["workspaces:write"])
def needs_write(request: HttpRequest) -> HttpResponse:
    return JsonResponse(request.user.cloudsync.post("/v1/workspaces", json={"name": "New"}), status=201)
