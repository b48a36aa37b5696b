"""Django REST framework glue (``pip install django-cloudsync[drf]``).

- :func:`client`: the CloudSync client of the user DRF authenticated, whichever authentication
  class did it (session, allauth headless's ``XSessionTokenAuthentication`` and
  ``JWTTokenAuthentication``, DRF's ``TokenAuthentication``); ``request.user.cloudsync`` works
  afterwards.
- :class:`HasCloudSync`: a permission (``HasCloudSync`` or ``HasCloudSync(scopes=[...])``) that
  answers a user without CloudSync or without the scopes in allauth headless's JSON envelope.
- :func:`exception_handler`: ``REST_FRAMEWORK["EXCEPTION_HANDLER"]``; CloudSync's errors become
  their JSON answers (:data:`django_cloudsync.responses.ERRORS`), everything else goes to DRF's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rest_framework.exceptions import APIException
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .. import responses
from ..decorators import _scope_list
from ..errors import CloudSyncError
from ..middleware import request_client
from . import refusal

if TYPE_CHECKING:
    from ..client import CloudSync

__all__ = ["CloudSyncAnswer", "HasCloudSync", "client", "exception_handler"]


def client(request: Any) -> CloudSync | None:
    """The authenticated user's CloudSync client, or ``None``: one query on first use, then cached."""
    return request_client(request)


class CloudSyncAnswer(APIException):
    """A JSON answer of :mod:`django_cloudsync.responses`, raised where DRF expects an exception.

    Its ``detail`` is the envelope itself, so DRF's own exception handler renders it too (with
    the status); :func:`exception_handler` adds the answer's headers.
    """

    def __init__(self, answer: responses.APIAnswer) -> None:
        super().__init__()
        self.answer = answer
        self.status_code = answer.status
        # Set after __init__: DRF would turn every value (the status too) into a string.
        self.detail = answer.body()


class HasCloudSync(BasePermission):
    """The user is signed in and connected to CloudSync, with ``scopes`` granted.

    ``permission_classes = [HasCloudSync]`` or ``[HasCloudSync(scopes=["workspaces:write"])]``.
    An anonymous user gets DRF's own 401/403 (the site's authentication answers); a user without
    CloudSync or without a scope gets a 403 saying which scopes and how to connect
    (``cloudsync_not_connected``, ``cloudsync_scope_required``). Costs the one query of
    :func:`client`, which the view then shares.
    """

    def __init__(self, scopes: str | Iterable[str] = ()) -> None:
        self.scopes = _scope_list(scopes)

    def __call__(self) -> HasCloudSync:
        # DRF instantiates each entry of permission_classes; an instance stands for itself.
        return self

    def has_permission(self, request: Any, view: Any) -> bool:
        answer = refusal(request, self.scopes)
        if answer is not None:
            raise CloudSyncAnswer(answer)
        return bool(request.user.is_authenticated)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler, answering CloudSync's errors as :mod:`django_cloudsync.responses` does."""
    request = context.get("request")
    if isinstance(exc, CloudSyncError) and request is not None:
        exc = CloudSyncAnswer(responses.error_answer(request, exc))
    response = drf_exception_handler(exc, context)
    if isinstance(exc, CloudSyncAnswer) and response is not None:
        exc.answer.finish(response)
    return response
