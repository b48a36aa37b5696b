"""``request.user.cloudsync``: the signed-in user's CloudSync client, computed on first use.

How it stays free until used
    ``request.user`` becomes a :class:`UserWithCloudSync`, a lazy proxy of the user
    ``AuthenticationMiddleware`` set. Wrapping loads nothing; reading ``.cloudsync`` loads the
    user (if nothing did yet) and then costs one query for the token row, cached for the
    request. No HTTP call happens until the client is used.

``login()`` and ``logout()`` inside a request
    ``login()`` replaces ``request.user``; a receiver of ``user_logged_in`` wraps the new user, so
    ``request.user.cloudsync`` is the client of the user signed in *now*, never the previous
    user's. ``logout()`` replaces it with Django's plain ``AnonymousUser`` after the last signal,
    so a view that goes on after ``logout()`` reads ``getattr(request.user, "cloudsync", None)``.

Async views
    ``await request.user.acloudsync()`` is the async twin of ``request.user.cloudsync`` (as
    ``await request.auser()`` is of ``request.user``): the same client, the same one query, run
    through Django's async ORM and never in the event loop. It loads the user if nothing did
    yet (with Django's ``request.auser()`` once that was awaited, else in a thread), and shares
    the cache with ``.cloudsync``. ``await request.auser()`` returns the same proxy, so
    ``(await request.auser()).acloudsync()`` works too, under ASGI and WSGI alike. The
    middleware is sync and async capable: an async chain stays async, with no thread.

Stored tokens that cannot be decrypted
    Building the client decrypts nothing, so pages that do not call CloudSync are unaffected
    when a key was removed from ``CLOUDSYNC_ENCRYPTION_KEYS``. ``request.user.cloudsync`` is
    still a client (the account is connected); its first call raises
    :class:`~django_cloudsync.errors.UndecryptableToken`, which the view may catch. Signing in
    with CloudSync again replaces the tokens, sealed with the current key.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject, cached_property, empty
from django.utils.module_loading import import_string

from . import responses
from .socialaccount import transaction as sign_in_transactions
from .sources import aclient_for, client_for

if TYPE_CHECKING:
    from .client import CloudSync


#: ``object``'s own ``__class__`` setter. A lazy object's ``__class__`` attribute is a property
#: that answers for the wrapped user, so ``user.__class__ = ...`` would load the user.
_set_class = object.__dict__["__class__"].__set__


class UserWithCloudSync(SimpleLazyObject):  # type: ignore[type-arg]
    """``request.user``, still lazy, with a lazy ``cloudsync`` attribute.

    Setting an attribute on ``request.user`` would load the user (a query on every request);
    proxying it instead costs nothing until something reads it.
    """

    @classmethod
    def wrapping(cls, user: Any) -> UserWithCloudSync:
        """A proxy of ``user`` (a user, an ``AnonymousUser`` or a lazy one), loaded on first use."""
        # type(), not isinstance(): isinstance() asks a lazy object for its __class__, and that
        # loads the user (a query) on requests that never use it.
        if issubclass(type(user), cls):
            proxy: UserWithCloudSync = user
            return proxy
        if type(user) is SimpleLazyObject:
            _adopt(user)
            return user  # type: ignore[return-value]  # now of this class
        if issubclass(type(user), SimpleLazyObject):
            # Share its loader rather than wrap the lazy object: code that reloads the user by
            # resetting ``request.user._wrapped`` (allauth's headless API does, after swapping
            # the session) must get the new session's user, not the one loaded before.
            proxy = cls(user._setupfunc)
            if user._wrapped is not empty:
                proxy._wrapped = user._wrapped
            return proxy
        proxy = cls(lambda: user)
        proxy._wrapped = user  # already loaded: nothing to do on first use, sync or async
        return proxy

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_wrapped":
            # The user is being (re)loaded: a client cached for the previous one must not stay.
            self.__dict__.pop("cloudsync", None)
        super().__setattr__(name, value)

    @cached_property
    def cloudsync(self) -> CloudSync | None:
        """The user's :class:`~django_cloudsync.client.CloudSync`, or ``None`` (anonymous, not connected)."""
        if self._wrapped is empty:
            self._setup()
        return client_for(self._wrapped)

    async def acloudsync(self) -> CloudSync | None:
        """The async twin of :attr:`cloudsync`: the same client, cached in the same place.

        Nothing runs in the event loop: the user is loaded by Django's ``request.auser()`` (or,
        for a proxy without it, in a thread) and the token row by the async ORM.
        """
        # The instance's own __dict__: an attribute lookup that misses would load the user.
        if "cloudsync" in self.__dict__:
            cached: CloudSync | None = self.__dict__["cloudsync"]
            return cached
        client = await aclient_for(await self.aload())
        self.__dict__["cloudsync"] = client
        return client

    async def aload(self) -> Any:
        """The wrapped user, loaded without blocking the event loop if nothing loaded it yet."""
        user: Any = self._wrapped  # type: ignore[has-type]  # set in LazyObject.__init__
        if user is empty:
            load_async = self.__dict__.get("_load_async")
            if load_async is not None:
                user = self._wrapped = await load_async()
            else:
                await sync_to_async(self._setup)()
                user = self._wrapped
        return user


def attach(request: HttpRequest) -> UserWithCloudSync:
    """Give ``request.user`` its ``cloudsync`` attribute and ``acloudsync()``; return it (the proxy).
    Idempotent, and free: nothing is loaded.

    :class:`CloudSyncMiddleware` calls it for every request, ``@cloudsync_required`` for the
    views it decorates, and a receiver of ``user_logged_in`` after ``login()`` replaced
    ``request.user``.
    """
    try:
        user: Any = request.user  # a lazy object, which the stubs do not express
    except AttributeError:
        raise ImproperlyConfigured(
            "request.user is not set: put CloudSyncMiddleware after "
            "django.contrib.auth.middleware.AuthenticationMiddleware."
        ) from None
    if type(user) is SimpleLazyObject:
        # The path of every request, so _adopt() spelled out: one call fewer.
        _set_class(user, UserWithCloudSync)
    else:
        # A proxy of a User or AnonymousUser, which stubs cannot express.
        user = request.user = UserWithCloudSync.wrapping(user)  # type: ignore[assignment]
    load_async = getattr(request, "auser", None)
    if load_async is not None and getattr(load_async, "func", None) is not _auser:
        # request.auser() answers with the proxy (which has acloudsync()), loaded by Django's
        # request.auser(). Only the partial is made here: the proxy learns of Django's loader
        # when request.auser() is awaited, so a request that never awaits it pays nothing more.
        request.auser = functools.partial(_auser, request, load_async)
    proxy: UserWithCloudSync = user
    return proxy


async def _auser(request: HttpRequest, load_async: Callable[[], Awaitable[Any]]) -> Any:
    """``request.auser()`` once the middleware ran: the user, as the proxy that has ``acloudsync()``.

    ``load_async`` is Django's own ``request.auser()``, which loads the user without blocking.
    """
    user: Any = request.user
    if issubclass(type(user), UserWithCloudSync):
        user.__dict__.setdefault("_load_async", load_async)
        await user.aload()
        return user
    # Something replaced request.user since (login(), an API framework): wrap what it set, which
    # Django's loader knows nothing of.
    proxy = UserWithCloudSync.wrapping(user)
    await proxy.aload()
    return proxy


def request_client(request: Any) -> CloudSync | None:
    """The client of the user on ``request``, whoever set it (Django, DRF, ninja), cached for the request.

    For API views whose authentication (allauth headless's session token or JWT, DRF's token)
    sets ``request.user`` after the middleware ran: afterwards ``request.user.cloudsync`` works
    there too. One query on first use, none after.
    """
    attach(request)
    client: CloudSync | None = request.user.cloudsync
    return client


def _adopt(user: SimpleLazyObject) -> None:  # type: ignore[type-arg]
    """Make AuthenticationMiddleware's lazy user a :class:`UserWithCloudSync`, in place.

    The subclass only adds attributes, so the object stays valid; nothing is allocated or
    loaded. The benchmark's "time per request with the middleware, view not using it" (at most
    2% more) is measured on this path.
    """
    _set_class(user, UserWithCloudSync)


@functools.lru_cache(maxsize=8)
def _always_active_filter(filter_path: str) -> Any:
    filter_class = import_string(filter_path)
    always_active = type(
        f"AlwaysActive{filter_class.__name__}",
        (filter_class,),
        {"is_active": lambda self, request: True, "__module__": __name__},
    )
    return always_active()


def protect_error_reports(request: HttpRequest) -> None:
    """Hide ``@sensitive_variables`` on this request's error reports even when ``DEBUG`` is on.

    Django's filter (``DEFAULT_EXCEPTION_REPORTER_FILTER``) stands down when ``DEBUG`` is on, and
    the technical 500 page then shows the locals that hold a decrypted token. This request gets
    the same filter, always active; only variables marked sensitive are hidden. A filter the site
    set on the request itself is left alone.
    """
    if "exception_reporter_filter" not in request.__dict__:
        request.exception_reporter_filter = _always_active_filter(settings.DEFAULT_EXCEPTION_REPORTER_FILTER)


@functools.cache
def _debug() -> bool:
    """``settings.DEBUG``, read once: a lazy-settings lookup per request is a fifth of what the
    middleware costs a page that does not use it. Forgotten when the setting changes (tests)."""
    return bool(settings.DEBUG)


@receiver(setting_changed, dispatch_uid="django_cloudsync.middleware.debug")
def _forget_debug(*, setting: str, **kwargs: Any) -> None:
    if setting == "DEBUG":
        _debug.cache_clear()


class CloudSyncMiddleware:
    """Gives views ``request.user.cloudsync``. Place it after ``AuthenticationMiddleware``.

    If a view lets :class:`~django_cloudsync.errors.ReauthorizationRequired` escape (the
    user's refresh token died), the user is sent through CloudSync's consent again and back to
    the same URL; a request that wants JSON gets a JSON answer instead, for that and for every
    other CloudSync error (:mod:`django_cloudsync.responses`). Error reports hide variables
    marked sensitive even with ``DEBUG`` on (see :func:`protect_error_reports`).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        # Django gives an async get_response when the chain is async: answer in kind, so that
        # Django adapts nothing (no thread hop per request).
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        # Both paths attach the client (free: nothing is loaded) and, with DEBUG on, hide
        # sensitive variables from error reports (with DEBUG off, Django's filter already does).
        attach(request)
        if _debug():
            protect_error_reports(request)
        waits_on_cloudsync = sign_in_transactions.allauth_sign_in(request)
        if waits_on_cloudsync is None:
            return self.get_response(request)
        # One of allauth's own views completes a sign-in: all of it commits, or none of it.
        with sign_in_transactions.sign_in_transaction(request):
            if not waits_on_cloudsync:
                sign_in_transactions.open_sign_in_transaction(request)
            return sign_in_transactions.commit_unless_failed(request, self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        attach(request)
        if _debug():
            protect_error_reports(request)
        get_response: Callable[[HttpRequest], Awaitable[HttpResponse]] = self.get_response
        return await get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        # A page goes through consent again after a dead grant; an API client gets JSON for
        # every CloudSync error (see django_cloudsync.responses).
        return responses.for_exception(request, exception)
