"""``@cloudsync_required``: a view that needs the user's CloudSync access (and maybe more scopes)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse

from . import responses
from .errors import CloudSyncError
from .middleware import UserWithCloudSync, attach, protect_error_reports

if TYPE_CHECKING:
    from .client import CloudSync

#: A view, sync or async (``async def``).
View = TypeVar("View", bound=Callable[..., Any])


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

    An ``async def`` view stays async: the user and the token row are loaded without blocking
    the event loop, and the view can use ``await request.user.acloudsync()``.
    """
    required = _scope_list(scopes)

    def refusal(request: HttpRequest, client: CloudSync | None) -> Callable[[], HttpResponse] | None:
        """The answer instead of the view, still to be built, or ``None`` to run the view."""
        if not request.user.is_authenticated:  # loaded already: the client was looked up for it
            return functools.partial(responses.login_required, request)
        missing = responses.missing_scopes(client, required)
        if client is None or missing:
            return functools.partial(responses.connection_required, request, client, missing)
        return None

    def decorator(view_func: View) -> View:
        if iscoroutinefunction(view_func):

            @functools.wraps(view_func)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
                client = await _prepare(request).acloudsync()
                answer = refusal(request, client)
                if answer is not None:
                    # Built in a thread: finding the login flows may read allauth's SocialApp rows.
                    return await sync_to_async(answer)()
                try:
                    response: HttpResponse = await view_func(request, *args, **kwargs)
                except CloudSyncError as exc:
                    return await sync_to_async(_answer_or_raise)(request, exc)
                return response

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(view_func)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            answer = refusal(request, _prepare(request).cloudsync)
            if answer is not None:
                return answer()
            try:
                response: HttpResponse = view_func(request, *args, **kwargs)
            except CloudSyncError as exc:
                return _answer_or_raise(request, exc)
            return response

        return wrapper  # type: ignore[return-value]

    return decorator(view) if view is not None else decorator


def _prepare(request: HttpRequest) -> UserWithCloudSync:
    # Without the middleware: give the view request.user.cloudsync (and acloudsync()), and keep
    # tokens off its error reports.
    user = attach(request)
    protect_error_reports(request)
    return user


def _answer_or_raise(request: HttpRequest, exc: CloudSyncError) -> HttpResponse:
    """The answer to a CloudSync error the view let escape; re-raised if it is not ours to answer."""
    answer = responses.for_exception(request, exc)
    if answer is None:
        raise exc
    return answer
