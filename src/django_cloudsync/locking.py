"""Locks and transactions: how one refresh per account happens, however many workers ask.

* :func:`local_lock`: threads of one process wait on a process-local lock of their account
  (cheap, no database round trips); one lock per account that someone holds or waits for, so a
  stuck account blocks no other, and the map holds only the accounts in use.
* :func:`claim_lease` / :func:`release_lease`: processes and hosts agree on the database who
  refreshes, with a short lease on the row claimed by compare-and-swap and committed at once.
  No database lock is held while the claimer talks to CloudSync: on SQLite, where a lock would
  be the whole database's write lock, unrelated writes (another user's sign-in) go on, and on
  PostgreSQL or MySQL no other writer of the row (a sign-in, a disconnect, a key rotation
  batch) waits for CloudSync either. A claimer that dies leaves a lease that runs out.
* :class:`Patience`: every wait for another worker ends, by ``CLOUDSYNC_LOCK_TIMEOUT``, in a typed
  :class:`~django_cloudsync.errors.LockTimeout`.
* :func:`outside_callers_transaction`: work whose writes must commit whatever the caller's
  transaction does (a refresh CloudSync has already rotated must not be rolled back with a view).
* :func:`with_lock_retries`: one short step on the database, waiting out a lock (SQLite's
  "database is locked", a row lock), bounded.

The token's life (:mod:`~django_cloudsync.tokens`) and the key rotation
(:mod:`~django_cloudsync.rotation`) both use these; neither has locking of its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TypeVar

from django.db import OperationalError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from . import conf, errors

T = TypeVar("T")
M = TypeVar("M", bound=Model)

#: The first pause between two looks at a lock, doubled up to ``_LONGEST_PAUSE``.
_FIRST_PAUSE = 0.02
_LONGEST_PAUSE = 0.25
#: Python's sqlite3 module's busy timeout when a site's ``OPTIONS`` set none.
_SQLITE_DEFAULT_BUSY_TIMEOUT = 5.0
#: PostgreSQL's lock_not_available and deadlock_detected; MySQL's lock wait timeout and deadlock.
_POSTGRESQL_LOCK_STATES = {"55P03", "40P01"}
_MYSQL_LOCK_ERRORS = {1205, 1213}


class Patience:
    """A bounded wait: pauses, growing, until ``seconds`` have passed; then ``error`` is raised."""

    def __init__(
        self, seconds: float | None = None, error: type[errors.CloudSyncError] = errors.LockTimeout
    ) -> None:
        self.deadline = time.monotonic() + (conf.lock_timeout() if seconds is None else seconds)
        self.error = error
        self._next_pause = _FIRST_PAUSE

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def pause(self, at_most: float | None = None) -> None:
        """Sleep a little (at most ``at_most`` seconds); raise ``error`` if the time is up."""
        remaining = self.remaining()
        if remaining <= 0:
            raise self.error()
        pause = min(self._next_pause, remaining)
        if at_most is not None:
            pause = max(0.001, min(pause, at_most))
        time.sleep(pause)
        self._next_pause = min(self._next_pause * 2, _LONGEST_PAUSE)


# The process-local lock of an account.


class _KeyedLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0  # threads holding or waiting for the lock; at 0 it leaves the map


_LOCAL_LOCKS: dict[object, _KeyedLock] = {}
_LOCAL_LOCKS_GUARD = threading.Lock()


@contextmanager
def local_lock(
    key: object, *, timeout: float | None = None, error: type[errors.CloudSyncError] = errors.LockTimeout
) -> Iterator[None]:
    """Hold the process-local lock of ``key`` (an account id), waiting at most ``timeout`` seconds
    (``CLOUDSYNC_LOCK_TIMEOUT``), else raise ``error``.

    Each key has a lock of its own while anyone holds or waits for it, and none after: a thread
    stuck on one account never blocks another account, and the map stays as small as the number
    of accounts in use at once.
    """
    with _LOCAL_LOCKS_GUARD:
        entry = _LOCAL_LOCKS.get(key)
        if entry is None:
            entry = _LOCAL_LOCKS[key] = _KeyedLock()
        entry.users += 1
    try:
        if not entry.lock.acquire(timeout=conf.lock_timeout() if timeout is None else timeout):
            raise error()
        try:
            yield
        finally:
            entry.lock.release()
    finally:
        with _LOCAL_LOCKS_GUARD:
            entry.users -= 1
            if entry.users == 0:
                del _LOCAL_LOCKS[key]


def local_locks_in_use() -> int:
    """How many accounts have a process-local lock now (held or waited for)."""
    with _LOCAL_LOCKS_GUARD:
        return len(_LOCAL_LOCKS)


# The lease on a row: who refreshes it, decided on the database, with no lock held after.


def lease_is_live(until: datetime | None, now: datetime | None = None) -> bool:
    """Whether a lease that lasts ``until`` still holds (another worker may be refreshing)."""
    return until is not None and until > (now or timezone.now())


def claim_lease(db: str, rows: QuerySet[M], seen_version: int, seconds: float) -> datetime | None:
    """Claim the lease of the row of ``rows`` for ``seconds``, if it is still at ``seen_version``
    and nobody holds a live lease; committed at once. Its end (the claim's identity, for
    :func:`release_lease`), or ``None`` if another worker claimed it or changed the row first.

    The model must have ``version`` and ``refresh_lease_until`` columns.
    """
    now = timezone.now()
    until = now + timedelta(seconds=seconds)
    free = Q(refresh_lease_until__isnull=True) | Q(refresh_lease_until__lte=now)
    claimable = rows.filter(free, version=seen_version)
    claimed = with_lock_retries(db, lambda: claimable.update(refresh_lease_until=until))
    return until if claimed else None


def release_lease(db: str, rows: QuerySet[M], until: datetime) -> None:
    """Give up the lease claimed until ``until``, unless it has passed to another worker since."""
    with_lock_retries(db, lambda: rows.filter(refresh_lease_until=until).update(refresh_lease_until=None))


# Transactions.


def outside_callers_transaction(db: str, work: Callable[[], T]) -> T:
    """Run ``work`` on ``db`` where what it writes commits on its own, whatever the caller's
    transaction does. ``work`` runs in autocommit: it opens its own short transactions.

    Inside a caller's transaction the work runs on a second connection, in a thread of its own.
    Not on SQLite: there the caller's open transaction holds a read lock that keeps any other
    connection from committing, so the work runs inside it (a rollback of the caller then rolls
    the refresh back too, and the caller's transaction holds the write lock until it ends; see
    the README on ``ATOMIC_REQUESTS``).
    """
    connection = connections[db]
    if not _inside_callers_transaction(connection) or connection.vendor == "sqlite":
        return work()
    results: list[T] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            results.append(work())
        except BaseException as exc:  # handed to the caller's thread below
            failures.append(exc)
        finally:
            connections[db].close()

    thread = threading.Thread(target=run, name="django-cloudsync-refresh", daemon=True)
    thread.start()
    thread.join()
    if failures:
        raise failures[0]
    return results[0]


def _inside_callers_transaction(connection: BaseDatabaseWrapper) -> bool:
    return connection.in_atomic_block and not all(
        # Django's TestCase wraps each test in atomic blocks marked like this; the test's data
        # is only visible inside them, so the work has to run there.
        getattr(block, "_from_testcase", False)
        for block in connection.atomic_blocks
    )


def with_lock_retries(
    db: str, work: Callable[[], T], *, atomic: bool = True, timeout: float | None = None
) -> T:
    """Run ``work`` (in a transaction of its own if ``atomic``), waiting out database locks.

    A lock held by another worker (SQLite's write lock, a row lock) is waited for at most
    ``timeout`` seconds (``CLOUDSYNC_LOCK_TIMEOUT``) in all, then
    :class:`~django_cloudsync.errors.LockTimeout` is raised, never the database's own error.
    Inside a caller's transaction a lock error cannot be retried (the transaction is broken):
    it is raised at once, as ``LockTimeout`` too.
    """
    patience = Patience(timeout)
    connection = connections[db]
    retrying = False
    while True:
        try:
            with _lock_waits_at_most(connection, patience.remaining(), bounded=atomic and retrying):
                if not atomic:
                    return work()
                with transaction.atomic(using=db):
                    _bound_row_lock_waits(connection, patience.remaining())
                    return work()
        except OperationalError as exc:
            if not is_lock_error(connection, exc):
                raise
            if connection.in_atomic_block or patience.remaining() <= 0:
                raise errors.LockTimeout() from exc
            patience.pause()
            retrying = True


def is_lock_error(connection: BaseDatabaseWrapper, exc: OperationalError) -> bool:
    """Whether ``exc`` means another worker held a lock longer than this one would wait."""
    if connection.vendor == "sqlite":
        return "locked" in str(exc)
    if connection.vendor == "postgresql":
        cause = exc.__cause__
        return (getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)) in _POSTGRESQL_LOCK_STATES
    # Another database's errors are none that this module knows as lock errors.
    return connection.vendor == "mysql" and bool(exc.args) and exc.args[0] in _MYSQL_LOCK_ERRORS


@contextmanager
def _lock_waits_at_most(connection: BaseDatabaseWrapper, seconds: float, *, bounded: bool) -> Iterator[None]:
    """On SQLite, if ``bounded``, lower the connection's busy timeout to ``seconds`` while the
    block runs (if that is lower), so that a retry never waits past what is left of the bound.

    A first attempt waits as long as the site's own busy timeout (``OPTIONS["timeout"]``, 5 s by
    default) and costs no extra query; so does work that is part of the caller's transaction (a
    sign-in storing its tokens among the view's other writes), as the rest of that work does.
    """
    if connection.vendor != "sqlite" or not bounded:
        yield
        return
    options = connection.settings_dict.get("OPTIONS", {})
    configured = float(options.get("timeout", _SQLITE_DEFAULT_BUSY_TIMEOUT))
    if seconds >= configured:
        yield
        return
    _set_sqlite_busy_timeout(connection, seconds)
    try:
        yield
    finally:
        _set_sqlite_busy_timeout(connection, configured)


def _set_sqlite_busy_timeout(connection: BaseDatabaseWrapper, seconds: float) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")


def _bound_row_lock_waits(connection: BaseDatabaseWrapper, seconds: float) -> None:
    """On PostgreSQL, let a row lock be waited for at most ``seconds`` in this transaction.

    Only when this transaction is the outermost: ``SET LOCAL`` would outlive a savepoint and
    bound the caller's own statements. MySQL bounds row lock waits itself
    (``innodb_lock_wait_timeout``, 50 s by default), and its error is a ``LockTimeout`` here too.
    """
    if connection.vendor != "postgresql" or len(connection.atomic_blocks) != 1:
        return
    milliseconds = max(1, int(seconds * 1000))
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{milliseconds}ms"])
