"""``@cloudsync_required``: a view that needs the user's CloudSync access (and maybe more scopes)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse

from .middleware import UserWithCloudSync
from .redirects import redirect_to_consent
from .sources import client_for

View = TypeVar("View", bound=Callable[..., HttpResponse])


@overload
def cloudsync_required(view: View) -> View: ...
@overload
def cloudsync_required(*, scopes: Iterable[str] = ()) -> Callable[[View], View]: ...


def cloudsync_required(view: Any = None, *, scopes: Iterable[str] = ()) -> Any:
    """Run the view only for a signed-in user whose CloudSync grant has ``scopes``.

    An anonymous user goes to sign in (``LOGIN_URL``). A user without CloudSync, or whose grant
    lacks some of ``scopes``, goes through CloudSync's consent for exactly the missing scopes
    (incremental authorization) and comes back to this view.
    """
    required = list(dict.fromkeys(scopes))

    def decorator(view_func: View) -> View:
        @functools.wraps(view_func)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            user = request.user
            # Without CloudSyncMiddleware there is no request.user.cloudsync: look it up here.
            client = user.cloudsync if isinstance(user, UserWithCloudSync) else client_for(user)
            granted = (client.scopes or []) if client is not None else []
            missing = [scope for scope in required if scope not in granted]
            if client is None or missing:
                return redirect_to_consent(request, missing)
            return view_func(request, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator(view) if view is not None else decorator
