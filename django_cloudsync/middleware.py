"""``request.user.cloudsync``: the signed-in user's CloudSync client, computed on first use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.functional import LazyObject, SimpleLazyObject, cached_property

from .errors import ReauthorizationRequired
from .redirects import redirect_to_consent
from .sources import client_for


def _evaluate(user: Any) -> Any:
    # Evaluate AuthenticationMiddleware's lazy user and return the user itself, so that our
    # wrapper proxies one object, not a lazy object inside a lazy object.
    if isinstance(user, LazyObject):
        user.is_authenticated  # noqa: B018  (loads the wrapped user)
        return user._wrapped
    return user


class UserWithCloudSync(SimpleLazyObject):
    """``request.user``, still lazy, with a lazy ``cloudsync`` attribute.

    Setting an attribute on ``request.user`` would load the user (a query on every request);
    proxying it instead costs nothing until ``.cloudsync`` is read, and then one query.
    """

    def __init__(self, user: Any) -> None:
        super().__init__(lambda: _evaluate(user))

    @cached_property
    def cloudsync(self) -> Any:
        """The user's :class:`~django_cloudsync.client.CloudSync`, or ``None`` (anonymous, not connected)."""
        return client_for(self)


class CloudSyncMiddleware:
    """Gives views ``request.user.cloudsync``. Place it after ``AuthenticationMiddleware``.

    If a view lets :class:`~django_cloudsync.errors.ReauthorizationRequired` escape (the
    user's refresh token died), the user is sent through CloudSync's consent again and back.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.user = UserWithCloudSync(request.user)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, ReauthorizationRequired):
            return redirect_to_consent(request, exception.scopes)
        return None
