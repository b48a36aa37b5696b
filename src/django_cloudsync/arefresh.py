"""The async twins of :mod:`~django_cloudsync.tokens`' refresh: once per expiry, from coroutines too.

However many coroutines of one event loop find an account's token expired, one of them refreshes
it and the others wait for it, without a thread each:

* Coroutines of one event loop wait on an ``asyncio.Lock`` of the account (one per account per
  loop, kept only while someone holds or awaits it).
* The coroutine holding it re-reads the row (Django's async ORM, so not in the event loop): if
  another coroutine, thread, process or host refreshed meanwhile, it uses those tokens.
* Otherwise it runs the sync refresh, the very function sync views use, in a worker thread:
  Django has no async transactions, and the sync refresh is where the process-local lock, the
  lease claimed on the row, its bounded waits and the signals live. So threads, processes and
  hosts are kept in line exactly as on the sync path, and the refresh runs in one thread once
  per refresh, not once per waiter.

The outcomes are the sync path's: a fault (timeout, 5xx, garbage) raises and keeps the stored
tokens; ``invalid_grant`` forgets them, sends ``reauthorization_required`` once and raises
:class:`~django_cloudsync.errors.ReauthorizationRequired`, as does every waiter that then finds
the row gone.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from . import errors, tokens
from .models import CloudSyncToken

__all__ = ["arefresh_after_rejection", "arefresh_if_expired"]

#: Per event loop, the lock of each account someone holds or awaits: an unused lock is dropped,
#: so memory follows the refreshes in flight, not the number of accounts ever seen.
_LOOP_LOCKS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, weakref.WeakValueDictionary[str, asyncio.Lock]
] = weakref.WeakKeyDictionary()
#: Guards _LOOP_LOCKS itself: event loops of several threads (ASGI servers' and async_to_sync's)
#: may create their tables at once.
_TABLE_LOCK = threading.Lock()


def loop_lock(account_id: str) -> asyncio.Lock:
    """The ``asyncio.Lock`` of ``account_id`` in the running event loop."""
    loop = asyncio.get_running_loop()
    with _TABLE_LOCK:
        locks = _LOOP_LOCKS.get(loop)
        if locks is None:
            locks = _LOOP_LOCKS[loop] = weakref.WeakValueDictionary()
        lock = locks.get(account_id)
        if lock is None:
            lock = locks[account_id] = asyncio.Lock()
    return lock


async def arefresh_if_expired(token: CloudSyncToken) -> CloudSyncToken:
    """The async twin of :func:`~django_cloudsync.tokens.refresh_if_expired`."""
    if not token.is_expiring():
        return token
    return await _arefresh(token, tokens.refresh_if_expired, lambda row: not row.is_expiring())


async def arefresh_after_rejection(token: CloudSyncToken) -> CloudSyncToken:
    """The async twin of :func:`~django_cloudsync.tokens.refresh_after_rejection`."""
    return await _arefresh(token, tokens.refresh_after_rejection, lambda row: row.version != token.version)


async def _arefresh(
    token: CloudSyncToken,
    refresh: Callable[[CloudSyncToken], CloudSyncToken],
    done_meanwhile: Callable[[CloudSyncToken], bool],
) -> CloudSyncToken:
    async with loop_lock(token.account_id):
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
