"""``@cloudsync_required``: a view that needs the user's CloudSync access (and maybe more scopes)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

from django.http import HttpRequest, HttpResponse

from . import responses
from .errors import CloudSyncError
from .middleware import attach, protect_error_reports

View = TypeVar("View", bound=Callable[..., HttpResponse])


def _scope_list(scopes: str | Iterable[str]) -> list[str]:
    # A single string is a scope string ("a b" or "a,b"), not an iterable of characters.
    if isinstance(scopes, str):
        scopes = scopes.replace(",", " ").split()
    required = list(dict.fromkeys(scopes))
    # One name each: a space or a comma inside one would be read as two scopes on the way.
    if not all(
        isinstance(scope, str) and scope.split() == [scope] and "," not in scope for scope in required
    ):
        raise TypeError("scopes must be scope names, e.g. scopes=['workspaces:write']")
    return required


@overload
def cloudsync_required(view: View) -> View: ...
@overload
def cloudsync_required(*, scopes: str | Iterable[str] = ()) -> Callable[[View], View]: ...


def cloudsync_required(view: Any = None, *, scopes: str | Iterable[str] = ()) -> Any:
    """Run the view only for a signed-in user whose CloudSync grant has ``scopes``.

    An anonymous user goes to sign in (``LOGIN_URL``, with ``next``). A user without
    CloudSync, or whose grant lacks some of ``scopes``, goes through CloudSync's consent
    (``process=connect``) for exactly the missing scopes, on top of the site's ``SCOPE``, and
    comes back to this view (incremental authorization).

    Works with or without :class:`~django_cloudsync.middleware.CloudSyncMiddleware`: the view
    can always use ``request.user.cloudsync``, and a
    :class:`~django_cloudsync.errors.ReauthorizationRequired` it lets escape becomes the same
    trip through consent and back. A request that wants JSON (:mod:`django_cloudsync.responses`)
    is never redirected: it gets a JSON answer saying what is missing and how to get it.
    """
    required = _scope_list(scopes)

    def decorator(view_func: View) -> View:
        @functools.wraps(view_func)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return responses.login_required(request)
            # Without the middleware: give the view request.user.cloudsync, and keep tokens off
            # its error reports.
            attach(request)
            protect_error_reports(request)
            client = request.user.cloudsync  # type: ignore[attr-defined]  # attach() added it
            missing = responses.missing_scopes(client, required)
            if client is None or missing:
                return responses.connection_required(request, client, missing)
            try:
                return view_func(request, *args, **kwargs)
            except CloudSyncError as exc:
                answer = responses.for_exception(request, exc)
                if answer is None:
                    raise
                return answer

        return wrapper  # type: ignore[return-value]

    return decorator(view) if view is not None else decorator
