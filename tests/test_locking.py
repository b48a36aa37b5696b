"""Locks that never block what they need not, and waits that end: a refresh that hangs on
CloudSync holds no database lock, blocks no other account, and its waiters give up typed."""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db import OperationalError, connections, transaction
from django.test import Client
from django.utils import timezone

from django_cloudsync import errors, locking, signals, tokens
from django_cloudsync.models import CloudSyncToken
from tests.helpers import ADA, expire, signed_in

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

#: How long the fake holds back a hanging token answer: longer than any step a test takes while
#: it hangs (each test asserts that the refresh was still in flight when that step ended).
HANG = 4.0
#: Bounds of the test's own loops, never reached when the code under test is right.
PATIENCE = 20.0

#: An account that shared Ada's process-local lock when those locks were 64 stripes.
ADAS_STRIPE_MATE = next(
    account
    for account in (f"usr_{n}" for n in itertools.count())
    if zlib.crc32(account.encode()) % 64 == zlib.crc32(ADA.encode()) % 64
)


@pytest.fixture
def slow_cloudsync(fake: Any, settings: Any) -> Any:
    """The fake, with a read timeout the hanging answers stay within (they end in success)."""
    settings.CLOUDSYNC_TIMEOUT = (2.0, HANG + 4)
    return fake


class Refresher:
    """A refresh in a thread of its own; its row or its error once it ends."""

    def __init__(self, refresh: Callable[[], CloudSyncToken]) -> None:
        self.row: CloudSyncToken | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(refresh,), daemon=True)

    def _run(self, refresh: Callable[[], CloudSyncToken]) -> None:
        try:
            self.row = refresh()
        except BaseException as exc:
            self.error = exc
        finally:
            connections.close_all()

    def join(self) -> CloudSyncToken:
        self.thread.join(timeout=PATIENCE)
        assert not self.thread.is_alive()
        assert self.error is None, repr(self.error)
        assert self.row is not None
        return self.row


@contextmanager
def hanging_refresh(fake: Any, token: CloudSyncToken) -> Iterator[Refresher]:
    """Refresh ``token`` in a thread while CloudSync holds its answer back for ``HANG`` seconds;
    the block runs once CloudSync has the request (and the refresher holds whatever it holds)."""
    attempts = fake.counters["refresh_attempts"]
    fake.delay_next("token", HANG)
    refresher = Refresher(lambda: tokens.refresh_if_expired(token))
    refresher.thread.start()
    deadline = time.monotonic() + PATIENCE
    while fake.counters["refresh_attempts"] == attempts:
        assert time.monotonic() < deadline, "the refresh never reached CloudSync"
        time.sleep(0.01)
    yield refresher


def sqlite_busy_timeout(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Let this site's SQLite connections wait ``seconds`` for the write lock (Django's default
    is 5 s; the test settings allow 30)."""
    monkeypatch.setitem(connections["default"].settings_dict["OPTIONS"], "timeout", seconds)
    connections["default"].close()  # reopened with it


def test_an_unrelated_sign_in_succeeds_while_a_refresh_hangs_on_sqlite(
    client: Any, slow_cloudsync: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = expire(signed_in(client))
    slow_cloudsync.add_user("usr_bob", email="bob@example.com", name="Bob")
    sqlite_busy_timeout(monkeypatch, 1.0)

    with hanging_refresh(slow_cloudsync, token) as refresher:
        bob = signed_in(Client(), user_id="usr_bob")  # writes a user, an account, tokens, a session
        assert refresher.thread.is_alive()  # the sign-in happened while the refresh hung

    assert refresher.join().version == token.version + 1
    assert bob.account_id == "usr_bob"
    assert CloudSyncToken.objects.count() == 2
    assert slow_cloudsync.counters["refreshes"] == 1


def test_no_transaction_is_open_while_cloudsync_is_asked(client: Any, slow_cloudsync: Any) -> None:
    token = expire(signed_in(client))

    with hanging_refresh(slow_cloudsync, token) as refresher:
        # Another connection can take SQLite's write lock at once (and give it back).
        raw = sqlite3.connect(connections["default"].settings_dict["NAME"], timeout=0)
        try:
            raw.execute("BEGIN IMMEDIATE")
            raw.rollback()
        finally:
            raw.close()
        claimed = CloudSyncToken.objects.get(pk=token.pk)
        assert refresher.thread.is_alive()

    assert locking.lease_is_live(claimed.refresh_lease_until)  # the claim is committed, and shows
    assert claimed.version == token.version
    refreshed = refresher.join()
    assert CloudSyncToken.objects.get(pk=token.pk).refresh_lease_until is None
    assert refreshed.version == token.version + 1


def test_a_stuck_account_does_not_block_another_accounts_refresh(
    client: Any, slow_cloudsync: Any, database: str
) -> None:
    slow_cloudsync.add_user(ADAS_STRIPE_MATE, email="mate@example.com", name="Mate")
    ada = expire(signed_in(client))
    mate = expire(signed_in(Client(), user_id=ADAS_STRIPE_MATE))

    with hanging_refresh(slow_cloudsync, ada) as refresher:
        refreshed_mate = tokens.refresh_if_expired(mate)
        assert refresher.thread.is_alive()  # the mate's refresh ended while Ada's hung

    assert refreshed_mate.version == mate.version + 1
    assert refresher.join().version == ada.version + 1
    assert slow_cloudsync.counters["refreshes"] == 2
    assert locking.local_locks_in_use() == 0


def test_a_waiter_in_the_same_process_gives_up_typed_and_sends_nothing(
    client: Any, slow_cloudsync: Any, settings: Any
) -> None:
    token = expire(signed_in(client))
    settings.CLOUDSYNC_LOCK_TIMEOUT = 0.2

    with hanging_refresh(slow_cloudsync, token) as refresher:
        with pytest.raises(errors.RefreshInProgress) as raised:
            tokens.refresh_if_expired(CloudSyncToken.objects.get(pk=token.pk))
        assert refresher.thread.is_alive()

    assert raised.value.retryable
    assert isinstance(raised.value, errors.Timeout)
    refreshed = refresher.join()
    assert slow_cloudsync.counters["refresh_attempts"] == 1
    # Once the refresh has landed, the waiter's next try uses its tokens.
    assert tokens.refresh_if_expired(token).access_token() == refreshed.access_token()
    assert slow_cloudsync.counters["refresh_attempts"] == 1


def test_a_waiter_of_another_process_waits_for_the_lease_bounded_and_sends_nothing(
    client: Any, slow_cloudsync: Any, settings: Any
) -> None:
    token = expire(signed_in(client))
    still_expiring: Callable[[CloudSyncToken], bool] = lambda row: row.is_expiring()  # noqa: E731

    with hanging_refresh(slow_cloudsync, token) as refresher:
        # Without this process's lock, as a worker process would: it finds the lease and waits,
        # first with too little patience, then with enough for the tokens to land.
        settings.CLOUDSYNC_LOCK_TIMEOUT = 0.2
        with pytest.raises(errors.RefreshInProgress):
            tokens.refresh_once(token, still_expiring)
        assert refresher.thread.is_alive()
        settings.CLOUDSYNC_LOCK_TIMEOUT = PATIENCE
        row, outcome = tokens.refresh_once(token, still_expiring)

    assert outcome is tokens.RefreshOutcome.UNCHANGED
    assert row is not None
    assert row.access_token() == refresher.join().access_token()
    assert slow_cloudsync.counters["refresh_attempts"] == 1


def test_a_dead_claimers_lease_runs_out_and_the_next_worker_refreshes(
    client: Any, fake: Any, settings: Any
) -> None:
    token = expire(signed_in(client))
    settings.CLOUDSYNC_LOCK_TIMEOUT = 0.2
    # A worker claimed the refresh and died before asking CloudSync.
    claimed_until = timezone.now() + timedelta(seconds=60)
    CloudSyncToken.objects.filter(pk=token.pk).update(refresh_lease_until=claimed_until)

    with pytest.raises(errors.RefreshInProgress):
        tokens.refresh_if_expired(token)
    assert fake.counters["refresh_attempts"] == 0

    CloudSyncToken.objects.filter(pk=token.pk).update(
        refresh_lease_until=timezone.now() - timedelta(seconds=1)
    )
    refreshed = tokens.refresh_if_expired(token)

    assert refreshed.version == token.version + 1
    assert fake.counters["refreshes"] == 1
    assert CloudSyncToken.objects.get(pk=token.pk).refresh_lease_until is None


def test_a_sign_in_while_a_refresh_hangs_wins(client: Any, slow_cloudsync: Any) -> None:
    token = expire(signed_in(client))

    with hanging_refresh(slow_cloudsync, token) as refresher:
        again = signed_in(client)  # a new grant, stored while the refresh hangs
        assert refresher.thread.is_alive()

    used = refresher.join()
    stored = CloudSyncToken.objects.get(pk=token.pk)
    assert stored.version == again.version == token.version + 1
    assert used.access_token() == stored.access_token() == again.access_token()
    assert slow_cloudsync.counters["refreshes"] == 1  # answered, and its tokens dropped


def test_invalid_grant_for_a_grant_a_sign_in_replaced_meanwhile_forgets_nothing(
    client: Any, slow_cloudsync: Any
) -> None:
    token = expire(signed_in(client))
    slow_cloudsync.revoke_tokens()  # the refresh below is refused...
    sent: list[dict[str, Any]] = []
    signals.reauthorization_required.connect(lambda **kw: sent.append(kw), weak=False, dispatch_uid="t5")
    try:
        with hanging_refresh(slow_cloudsync, token) as refresher:
            again = signed_in(client)  # ...but a new grant is stored before CloudSync answers
            assert refresher.thread.is_alive()
        used = refresher.join()
    finally:
        signals.reauthorization_required.disconnect(dispatch_uid="t5")

    stored = CloudSyncToken.objects.get(pk=token.pk)
    assert used.access_token() == stored.access_token() == again.access_token()
    assert stored.refresh_lease_until is None  # the refused refresh gave its lease back
    assert slow_cloudsync.counters["invalid_grants"] == 1
    assert sent == []


def test_a_worker_that_loses_the_claim_uses_the_winners_tokens(client: Any, fake: Any) -> None:
    token = expire(signed_in(client))
    still_expiring: Callable[[CloudSyncToken], bool] = lambda row: row.is_expiring()  # noqa: E731
    winner = Refresher(lambda: tokens.refresh_if_expired(token))  # on a connection of its own

    def another_worker_claims_first(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        if sql.startswith("UPDATE") and winner.row is None:
            winner.thread.start()  # between our read of the row and our claim of it
            winner.join()
        return execute(sql, *args)

    with connections["default"].execute_wrapper(another_worker_claims_first):
        row, outcome = tokens.refresh_once(token, still_expiring)

    assert outcome is tokens.RefreshOutcome.UNCHANGED
    assert row is not None
    assert row.version == token.version + 1
    assert row.access_token() == winner.join().access_token()
    assert fake.counters["refresh_attempts"] == 1


def test_sqlites_write_lock_held_too_long_is_a_typed_error(
    client: Any, fake: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = expire(signed_in(client))
    settings.CLOUDSYNC_LOCK_TIMEOUT = 0.3
    settings.CLOUDSYNC_TIMEOUT = 0.2
    sqlite_busy_timeout(monkeypatch, 0.05)
    holder = sqlite3.connect(connections["default"].settings_dict["NAME"], timeout=0)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process's long write transaction

        with pytest.raises(errors.LockTimeout) as raised:
            tokens.refresh_if_expired(token)
    finally:
        holder.rollback()
        holder.close()

    assert isinstance(raised.value.__cause__, OperationalError)
    assert fake.counters["refresh_attempts"] == 0
    assert tokens.refresh_if_expired(token).version == token.version + 1


def test_sqlites_write_lock_held_a_moment_is_waited_out(
    client: Any, fake: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = expire(signed_in(client))
    settings.CLOUDSYNC_LOCK_TIMEOUT = PATIENCE  # far longer than the busy timeout
    sqlite_busy_timeout(monkeypatch, 0.05)
    holder = sqlite3.connect(connections["default"].settings_dict["NAME"], timeout=0)
    holder.execute("BEGIN IMMEDIATE")
    locked: list[str] = []

    def release_after_the_first_failure(execute: Callable[..., Any], *args: Any) -> Any:
        try:
            return execute(*args)
        except OperationalError as exc:
            locked.append(str(exc))
            holder.rollback()  # the other writer commits: the retry finds the lock free
            raise

    try:
        with connections["default"].execute_wrapper(release_after_the_first_failure):
            refreshed = tokens.refresh_if_expired(token)
    finally:
        holder.rollback()
        holder.close()

    assert locked == ["database is locked"]
    assert refreshed.version == token.version + 1
    assert fake.counters["refreshes"] == 1


def test_a_row_lock_held_too_long_on_a_database_server_is_a_typed_error(
    on_server_database: str, client: Any, fake: Any
) -> None:
    token = signed_in(client)
    rows = CloudSyncToken.objects.filter(pk=token.pk)
    if connections[on_server_database].vendor == "mysql":
        # MySQL bounds a row lock wait itself (innodb_lock_wait_timeout, 50 s by default).
        with connections[on_server_database].cursor() as cursor:
            cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")
    locked, release = threading.Event(), threading.Event()

    def hold_the_row() -> None:  # another worker's long transaction
        try:
            with transaction.atomic(using=on_server_database):
                rows.select_for_update().get()
                locked.set()
                release.wait(timeout=PATIENCE)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_row, daemon=True)
    holder.start()
    assert locked.wait(timeout=PATIENCE)
    try:
        with pytest.raises(errors.LockTimeout) as raised:
            locking.with_lock_retries(on_server_database, lambda: rows.update(scope="changed"), timeout=0.3)
    finally:
        release.set()
        holder.join(timeout=PATIENCE)

    assert isinstance(raised.value.__cause__, OperationalError)
    assert rows.get().scope == token.scope
    assert locking.with_lock_retries(on_server_database, lambda: rows.update(scope="changed")) == 1


def test_a_database_error_that_is_not_a_lock_is_raised_as_it_is_at_once() -> None:
    attempts = 0

    def query_a_missing_table() -> None:
        nonlocal attempts
        attempts += 1
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    with pytest.raises(OperationalError, match="no such table"):
        locking.with_lock_retries("default", query_a_missing_table)

    assert attempts == 1


# The process-local locks themselves.


def test_a_local_lock_blocks_its_key_only_and_is_dropped_when_unused() -> None:
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with locking.local_lock("stuck", timeout=PATIENCE):
            held.set()
            release.wait(timeout=PATIENCE)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert held.wait(timeout=PATIENCE)
    try:
        with locking.local_lock("another", timeout=0):
            assert locking.local_locks_in_use() == 2
        waiting = locking.local_lock("stuck", timeout=0.01, error=errors.RefreshInProgress)
        with pytest.raises(errors.RefreshInProgress):
            waiting.__enter__()
        assert locking.local_locks_in_use() == 1
    finally:
        release.set()
        holder.join(timeout=PATIENCE)

    assert locking.local_locks_in_use() == 0
    for n in range(1000):
        with locking.local_lock(f"account-{n}", timeout=0):
            pass
    assert locking.local_locks_in_use() == 0


def test_a_wait_ends_in_its_typed_error() -> None:
    patience = locking.Patience(0.05, errors.RefreshInProgress)
    pauses = 0

    def pause() -> None:
        nonlocal pauses
        pauses += 1
        patience.pause()

    for _ in range(1000):
        if patience.remaining() == 0:
            break
        pause()
    with pytest.raises(errors.RefreshInProgress):
        patience.pause()

    assert 1 < pauses < 1000
