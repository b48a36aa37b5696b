"""Locks and transactions: how one refresh per account happens, however many workers ask.

* :func:`local_lock`: threads of one process wait on a process-local lock (cheap, no database
  round trips), striped so memory stays bounded however many accounts there are.
* :func:`lock_row`: processes and hosts wait on the database: a row lock (``SELECT ... FOR
  UPDATE``) where the database has them; on SQLite, which has none, a write that takes the
  database's write lock, which serializes writers across processes on one host.
* :func:`in_own_transaction`: work that must commit whatever the caller's transaction does
  (a refresh CloudSync has already rotated must not be rolled back with a view).
* :func:`with_lock_retries`: waiting out SQLite's "database is locked", bounded.

The token's life (:mod:`~django_cloudsync.tokens`) and the key rotation
(:mod:`~django_cloudsync.rotation`) both use these; neither has locking of its own.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError, connections, transaction
from django.db.models import F, Model, QuerySet

from . import conf

T = TypeVar("T")
M = TypeVar("M", bound=Model)

_LOCAL_LOCKS = tuple(threading.Lock() for _ in range(64))


def local_lock(key: object) -> threading.Lock:
    """The process-local lock of ``key`` (an account id): one of a fixed stripe of locks."""
    return _LOCAL_LOCKS[zlib.crc32(str(key).encode()) % len(_LOCAL_LOCKS)]


def lock_row(queryset: QuerySet[M]) -> M | None:
    """Lock and return the row of ``queryset`` (or ``None``), inside the current transaction.

    The model must have a ``version`` column: on SQLite, rewriting it to itself is the write
    that takes the database's write lock.
    """
    db = queryset.db
    if connections[db].features.has_select_for_update:
        return queryset.select_for_update().first()
    # SQLite has no row locks. Any write takes the database's write lock, held until this
    # transaction ends, which serializes every writer of every process on this host.
    queryset.update(version=F("version"))
    return queryset.first()


def in_own_transaction(db: str, work: Callable[[], T]) -> T:
    """Run ``work`` on ``db`` in a transaction that commits on its own, whatever the caller's.

    Inside a caller's transaction the work runs on a second connection, in a thread of its own.
    Not on SQLite: there the caller's open transaction holds a read lock that keeps any other
    connection from committing, so the work runs inside it (a rollback of the caller then rolls
    the refresh back too; see the README on ``ATOMIC_REQUESTS``).
    """
    connection = connections[db]
    inside_caller_transaction = connection.in_atomic_block and not all(
        # Django's TestCase wraps each test in atomic blocks marked like this; the test's data
        # is only visible inside them, so the work has to run there.
        getattr(block, "_from_testcase", False)
        for block in connection.atomic_blocks
    )
    if not inside_caller_transaction or connection.vendor == "sqlite":
        return with_lock_retries(db, work)
    results: list[T] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            results.append(with_lock_retries(db, work))
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


def with_lock_retries(db: str, work: Callable[[], T], *, atomic: bool = True) -> T:
    """Run ``work`` (in a transaction of its own if ``atomic``), waiting out SQLite's write lock.

    On SQLite a waiting writer gives up after its busy timeout ("database is locked"); keep
    waiting, bounded, for as long as a refresh can take. Inside a caller's transaction the error
    cannot be retried (the transaction is broken) and is raised.
    """
    connect, read = conf.timeout()
    deadline = time.monotonic() + connect + read + 5
    while True:
        try:
            if not atomic:
                return work()
            with transaction.atomic(using=db):
                return work()
        except OperationalError as exc:
            connection = connections[db]
            retryable = (
                connection.vendor == "sqlite" and "locked" in str(exc) and not connection.in_atomic_block
            )
            if not retryable or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
