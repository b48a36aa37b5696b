"""django-ninja glue (``pip install django-cloudsync[ninja]``).

- :func:`install`: register exception handlers on a ``NinjaAPI`` so that CloudSync's errors and
  this app's answers become JSON in allauth headless's envelope
  (:data:`django_cloudsync.responses.ERRORS`).
- :class:`CloudSyncAuth`: an ``auth=`` wrapper around ninja auth callables (allauth headless's
  ``x_session_token_auth``, its ``JWTTokenAuth``, ninja's ``django_auth``, ...) that also
  requires a CloudSync connection with ``scopes``.
- :func:`client`: the authenticated user's CloudSync client; ``request.user.cloudsync`` works
  afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI

from .. import responses
from ..decorators import _scope_list
from ..errors import CloudSyncError
from ..middleware import request_client
from . import refusal

if TYPE_CHECKING:
    from ..client import CloudSync

__all__ = ["CloudSyncAnswer", "CloudSyncAuth", "client", "install"]


def client(request: HttpRequest) -> CloudSync | None:
    """The authenticated user's CloudSync client, or ``None``: one query on first use, then cached."""
    _user_from_auth(request, getattr(request, "auth", None))
    return request_client(request)


def _user_from_auth(request: HttpRequest, result: Any) -> None:
    # An auth that returns the user without setting request.user (allauth's own
    # x_session_token_auth before 65.15 does): ninja keeps it as request.auth; the user is that one.
    if getattr(result, "is_authenticated", False) is True:
        request.user = result


class CloudSyncAnswer(Exception):
    """A JSON answer of :mod:`django_cloudsync.responses`, raised to reach :func:`install`'s handler."""

    def __init__(self, answer: responses.APIAnswer) -> None:
        super().__init__(answer.code)
        self.answer = answer


class CloudSyncAuth:
    """``auth=CloudSyncAuth(x_session_token_auth, scopes=["workspaces:write"])``.

    The first of ``auth`` that authenticates the request decides (as ninja does with a list);
    none does: ninja's own 401. The user must then be connected to CloudSync with ``scopes``;
    otherwise a 403 names the scopes and how to connect (``cloudsync_not_connected``,
    ``cloudsync_scope_required``), which needs :func:`install` on the API.
    """

    def __init__(self, *auth: Callable[[HttpRequest], Any], scopes: str | Iterable[str] = ()) -> None:
        if not auth:
            raise TypeError("CloudSyncAuth needs the auth callables that authenticate the user")
        self.auth = auth
        self.scopes = _scope_list(scopes)

    def __call__(self, request: HttpRequest) -> Any:
        for auth in self.auth:
            result = auth(request)
            if result:
                break
        else:
            return None
        _user_from_auth(request, result)
        answer = refusal(request, self.scopes)
        if answer is not None:
            raise CloudSyncAnswer(answer)
        return result if request.user.is_authenticated else None


def install(api: NinjaAPI) -> NinjaAPI:
    """Answer CloudSync's errors on ``api`` as :mod:`django_cloudsync.responses` does; returns ``api``."""

    # ninja types an exception handler's argument as the exception or its class; it gets the former.
    def answer(request: HttpRequest, exc: Any) -> HttpResponse:
        reply = exc.answer if isinstance(exc, CloudSyncAnswer) else responses.error_answer(request, exc)
        return reply.finish(api.create_response(request, reply.body(), status=reply.status))

    api.add_exception_handler(CloudSyncAnswer, answer)
    api.add_exception_handler(CloudSyncError, answer)
    return api
