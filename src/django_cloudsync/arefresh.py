"""The async twins of :mod:`~django_cloudsync.tokens`' refresh: once per expiry, from coroutines too.

However many coroutines of one event loop find an account's token expired, one refresh runs and
all of them share its outcome, without a thread each:

* The first coroutine of a loop to need a refresh starts it as a task of the loop, and the
  coroutines that need the same refresh while it runs await that task instead of starting their
  own (one task per row and kind of refresh per loop, kept only while it runs). So the row is
  re-read once per refresh, not once per waiter: each re-read is a query and a hop to the ORM's
  thread, which a burst of waiters would otherwise take one after another.
* The task re-reads the row (Django's async ORM, so not in the event loop): if another thread,
  process or host refreshed meanwhile, it uses those tokens.
* Otherwise it runs the sync refresh, the very function sync views use, in a worker thread:
  Django has no async transactions, and the sync refresh is where the process-local lock, the
  lease claimed on the row, its bounded waits and the signals live. So threads, processes and
  hosts are kept in line exactly as on the sync path, and the refresh runs in one thread once
  per refresh, not once per waiter.
* Every coroutine, the first one included, awaits the task through :func:`asyncio.shield`: one
  that is cancelled (its request gone) stops waiting, and the refresh goes on for the others. It
  must anyway: once the token request is sent, CloudSync may have rotated the refresh token, and
  only the refresh that sent it can store the new one.

The two kinds of refresh share only with their own kind. After an expiry, any current row that
is no longer expiring serves every coroutine. After a rejection, the row must be newer than the
version rejected, so a coroutine shares only with those that saw the same version rejected. An
expiry and a rejection of one row do not share: their outcomes can differ (a row without a
refresh token is used as it is on expiry, forgotten on rejection; an expiry refresh that finds
the row fresh may return the very version a 401 just refused). When both run at once, the sync
refresh's process-local lock queues them and the second one's re-read finds the first one's
tokens: still one token request.

The outcomes are the sync path's, in every coroutine that shares the refresh: the refreshed row
(the same instance for all of them: read it, do not change it); or a fault (timeout, 5xx,
garbage) that raises the same typed error in each, and keeps the stored tokens; or
``invalid_grant``, which forgets them, sends ``reauthorization_required`` once and raises
:class:`~django_cloudsync.errors.ReauthorizationRequired` in each. Each coroutine raises an
instance of its own, made from the shared one (its cause), so that what one request's handling
does to its error reaches no other; none of them holds a token (see
:mod:`~django_cloudsync.errors`). A coroutine that comes once the refresh has ended starts
another only if its own token still needs one (``arefresh_if_expired`` looks first); that
refresh's re-read then finds the new tokens, or the row gone, with no token request.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from . import errors, tokens
from .models import CloudSyncToken

__all__ = ["arefresh_after_rejection", "arefresh_if_expired"]

#: What a refresh in flight is shared by: the row's primary key and the kind of refresh, with the
#: version a 401 refused for a refresh after a rejection (see the module's docstring).
_Key = tuple[Any, ...]
_Table = dict[_Key, asyncio.Task[CloudSyncToken]]

#: Per event loop, the refreshes in flight: each one's task, held here while it runs (a loop
#: keeps only weak references to its tasks) and dropped as it ends, so memory follows the
#: refreshes in flight, not the number of accounts ever seen; and a loop's table goes with it.
_IN_FLIGHT: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Table] = weakref.WeakKeyDictionary()
#: Guards _IN_FLIGHT itself: event loops of several threads (ASGI servers' and async_to_sync's)
#: may create their tables at once. Each table is only ever touched from its loop's thread.
_TABLE_LOCK = threading.Lock()


def _in_flight() -> _Table:
    """The running event loop's table of refreshes in flight."""
    loop = asyncio.get_running_loop()
    with _TABLE_LOCK:
        table = _IN_FLIGHT.get(loop)
        if table is None:
            table = _IN_FLIGHT[loop] = {}
    return table


async def arefresh_if_expired(token: CloudSyncToken) -> CloudSyncToken:
    """The async twin of :func:`~django_cloudsync.tokens.refresh_if_expired`."""
    if not token.is_expiring():
        return token
    return await _shared(
        token, (token.pk, "expired"), tokens.refresh_if_expired, lambda row: not row.is_expiring()
    )


async def arefresh_after_rejection(token: CloudSyncToken) -> CloudSyncToken:
    """The async twin of :func:`~django_cloudsync.tokens.refresh_after_rejection`.

    Shared by the coroutines whose token of the same version CloudSync refused: a row of any
    other version serves them all.
    """
    return await _shared(
        token,
        (token.pk, "rejected", token.version),
        tokens.refresh_after_rejection,
        lambda row: row.version != token.version,
    )


async def _shared(
    token: CloudSyncToken,
    key: _Key,
    refresh: Callable[[CloudSyncToken], CloudSyncToken],
    done_meanwhile: Callable[[CloudSyncToken], bool],
) -> CloudSyncToken:
    """The outcome of the refresh in flight under ``key`` in this loop, started if there is none."""
    table = _in_flight()
    work = table.get(key)
    if work is None:
        # Announced before anything is awaited: every coroutine that needs this refresh from now
        # on finds it. (Until its entry is dropped, at once after it ends, a coroutine may still
        # find it done: it gets that outcome, as fresh as a re-read would have been.)
        work = table[key] = asyncio.get_running_loop().create_task(
            _reread_and_refresh(token, refresh, done_meanwhile)
        )
        # The first of its callbacks, so the entry is gone before any coroutine awaiting it resumes.
        work.add_done_callback(functools.partial(_ended, table, key))
    try:
        # shield: cancelling one coroutine (the first one included) leaves the refresh running.
        return await asyncio.shield(work)
    except errors.CloudSyncError as exc:
        raise copy.copy(exc) from exc


def _ended(table: _Table, key: _Key, work: asyncio.Task[CloudSyncToken]) -> None:
    del table[key]
    if not work.cancelled():  # cancelled, it ended with its loop (asyncio.run cancels what is left)
        # Retrieved here: if every coroutine awaiting it was cancelled, none will, and asyncio
        # would log the fault as never retrieved.
        work.exception()


async def _reread_and_refresh(
    token: CloudSyncToken,
    refresh: Callable[[CloudSyncToken], CloudSyncToken],
    done_meanwhile: Callable[[CloudSyncToken], bool],
) -> CloudSyncToken:
    row = await CloudSyncToken.objects.filter(pk=token.pk).afirst()
    if row is None:
        # Forgotten meanwhile (disconnected, or another worker got invalid_grant and sent
        # reauthorization_required): as on the sync path, no second signal.
        raise errors.ReauthorizationRequired(scopes=token.scopes)
    if done_meanwhile(row):
        return row
    # Not thread_sensitive: the request's own sync thread stays free for the async ORM of
    # every other coroutine while CloudSync answers the token request.
    in_thread = sync_to_async(_in_worker_thread, thread_sensitive=False)
    refreshed: CloudSyncToken = await in_thread(refresh, row)
    return refreshed


def _in_worker_thread(
    refresh: Callable[[CloudSyncToken], CloudSyncToken], row: CloudSyncToken
) -> CloudSyncToken:
    try:
        return refresh(row)
    finally:
        # The executor's thread is no request's: its connection would outlive CONN_MAX_AGE.
        close_old_connections()
