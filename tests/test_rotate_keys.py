"""``manage.py cloudsync_rotate_keys``: every token moves to the new key, in batches, resumably,
without losing a refresh that happens at the same moment, and without hiding a row it cannot read."""

from __future__ import annotations

import gc
import io
import re
import threading
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections, router
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from django_cloudsync import conf, rotation, tokens
from django_cloudsync.crypto import TokenCipher, key_id, parse_key
from django_cloudsync.models import CloudSyncToken
from django_cloudsync.oauth import TokenResponse
from tests.helpers import expire, signed_in

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

OLD_KEY = "xCHPAMGPkhXrXVp3vGuk4K6Fm-3vQIz6qKdk1Ej2bL0="
NEW_KEY = "g7f3n6m0z8dzuXg3DnDnS2R6c5z1C3o6r2D8o0w1F2E="
STRAY_KEY = "Qk9HVVMta2V5LW5vYm9keS1oYXMtdGhpcy1rZXkhISE="
OLD_ID, NEW_ID, STRAY_ID = (key_id(parse_key(k)) for k in (OLD_KEY, NEW_KEY, STRAY_KEY))


class Terminal(io.StringIO):
    """Captured output that says it is a terminal, as the progress bar requires."""

    def isatty(self) -> bool:
        return True


def make_rows(count: int, *, prefix: str = "usr_bulk") -> dict[uuid.UUID, tuple[str, str]]:
    """``count`` connected accounts under the current keys, created in bulk; their plaintext tokens by pk."""
    User = get_user_model()
    users = User.objects.bulk_create(
        [User(username=f"{prefix}_{n}", email=f"{prefix}_{n}@example.com") for n in range(count)]
    )
    accounts = SocialAccount.objects.bulk_create(
        [SocialAccount(user=user, provider="cloudsync", uid=f"{prefix}_{n}") for n, user in enumerate(users)]
    )
    rows, plaintexts = [], {}
    for n, account in enumerate(accounts):
        row = CloudSyncToken(social_account=account, account_id=account.uid)
        access, refresh = f"at_test_{prefix}_{n}_access", f"rt_test_{prefix}_{n}_refresh"
        row.set_tokens(TokenResponse(access, refresh, expires_in=3600, scope="workspaces:read"))
        rows.append(row)
        plaintexts[row.pk] = (access, refresh)
    CloudSyncToken.objects.bulk_create(rows)
    return plaintexts


def rotate_keys(**options: Any) -> rotation.Tally:
    """A rotation run by the engine, as the command runs it."""
    return rotation.KeyRotation(**options).run()


def rotate(*args: str, stdout: io.StringIO | None = None, stderr: io.StringIO | None = None) -> str:
    """The command's output."""
    out = stdout if stdout is not None else io.StringIO()
    call_command("cloudsync_rotate_keys", *args, stdout=out, stderr=stderr or io.StringIO())
    return out.getvalue()


def ciphertexts() -> dict[uuid.UUID, tuple[str, str]]:
    return {
        pk: (access, refresh)
        for pk, access, refresh in CloudSyncToken.objects.values_list(
            "pk", "access_token_ciphertext", "refresh_token_ciphertext"
        )
    }


def key_ids_in_use() -> dict[uuid.UUID, set[str]]:
    cipher = TokenCipher([NEW_KEY])
    return {
        pk: {cipher.key_id_of(access), *([cipher.key_id_of(refresh)] if refresh else [])}
        for pk, (access, refresh) in ciphertexts().items()
    }


def readable_tokens() -> dict[uuid.UUID, tuple[str, str | None]]:
    """Every row's tokens, decrypted with the keys configured now."""
    return {row.pk: (row.access_token(), row.refresh_token()) for row in CloudSyncToken.objects.all()}


def test_rotation_moves_every_token_to_the_new_key_so_the_old_key_can_go(
    client: Any, fake: Any, settings: Any
) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    ada = signed_in(client)
    plaintexts: dict[uuid.UUID, tuple[str, str | None]] = {**make_rows(25)}
    plaintexts[ada.pk] = (ada.access_token(), ada.refresh_token())
    before = {row.pk: (row.version, row.updated_at) for row in CloudSyncToken.objects.all()}

    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    result = rotate_keys(batch_size=7)
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY]

    assert (result.examined, result.rotated, result.current) == (26, 26, 0)
    assert result.complete
    assert set(map(frozenset, key_ids_in_use().values())) == {frozenset({NEW_ID})}
    for row in CloudSyncToken.objects.all():
        assert (row.access_token(), row.refresh_token()) == plaintexts[row.pk]
        assert (row.version, row.updated_at) == before[row.pk]  # not "new tokens": nothing to refresh


def test_the_rotated_account_still_works_against_cloudsync(client: Any, fake: Any, settings: Any) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    token = signed_in(client)
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    rotate_keys()
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY]
    expire(token)

    refreshed = tokens.refresh_if_expired(CloudSyncToken.objects.get())  # uses the rotated refresh token

    assert fake.counters["refreshes"] == 1
    assert fake.counters["invalid_grants"] == 0
    assert refreshed.access_token().startswith("at_test_")


def test_a_second_run_re_encrypts_nothing(settings: Any) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    make_rows(10)
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    rotate_keys()
    after_first = ciphertexts()

    result = rotate_keys()

    assert (result.rotated, result.current) == (0, 10)
    assert ciphertexts() == after_first


def test_rotation_stopped_at_a_limit_finishes_on_the_next_run_without_re_encrypting_twice(
    settings: Any,
) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    plaintexts = make_rows(20)
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]

    first = rotate_keys(batch_size=3, limit=7)
    done_first = {pk: pair for pk, pair in ciphertexts().items() if key_ids_in_use()[pk] == {NEW_ID}}
    second = rotate_keys(batch_size=3)

    assert (first.rotated, first.limit_reached, first.complete) == (7, True, False)
    assert len(done_first) == 7
    assert (second.rotated, second.current, second.complete) == (13, 7, True)
    after = ciphertexts()
    assert all(after[pk] == pair for pk, pair in done_first.items())  # untouched by the second run
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY]
    assert {
        row.pk: (row.access_token(), row.refresh_token()) for row in CloudSyncToken.objects.all()
    } == plaintexts


def interrupt_at_update(number: int) -> Callable[..., Any]:
    """A database execute wrapper: Ctrl-C arrives just before the ``number``-th ciphertext UPDATE
    (one per batch, for batches within the database's limit on query parameters)."""
    seen = 0

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal seen
        if sql.startswith("UPDATE") and "access_token_ciphertext" in sql:
            seen += 1
            if seen == number:
                raise KeyboardInterrupt
        return execute(sql, params, many, context)

    return wrapper


def test_an_interrupted_rotation_keeps_whole_batches_and_finishes_on_the_next_run(settings: Any) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    plaintexts = make_rows(12)
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    connection = connections[router.db_for_write(CloudSyncToken)]
    interrupted = rotation.KeyRotation(batch_size=5)

    with connection.execute_wrapper(interrupt_at_update(2)), pytest.raises(KeyboardInterrupt):
        interrupted.run()

    assert interrupted.result.rotated == 5  # the first batch committed...
    in_use = key_ids_in_use()
    assert sorted(len([pk for pk in in_use if in_use[pk] == {kid}]) for kid in (NEW_ID, OLD_ID)) == [5, 7]
    # ...the interrupted one rolled back whole, and the next run finishes the job.
    assert rotate_keys(batch_size=5).rotated == 7
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY]
    assert {
        row.pk: (row.access_token(), row.refresh_token()) for row in CloudSyncToken.objects.all()
    } == plaintexts


@pytest.mark.parametrize("stdout", [Terminal, io.StringIO], ids=["terminal", "pipe"])
def test_the_command_interrupted_says_how_to_resume(settings: Any, stdout: type[io.StringIO]) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    make_rows(6)
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    connection = connections[router.db_for_write(CloudSyncToken)]
    output = stdout()

    with connection.execute_wrapper(interrupt_at_update(2)), pytest.raises(CommandError) as raised:
        rotate("--batch-size", "3", stdout=output)

    assert raised.value.returncode == 130
    assert "run the command again" in str(raised.value)
    # The report says what the saved batches did; on a terminal, on a line of its own after the bar's.
    report = "Re-encrypted 3 rows under key"
    expected = f"\rRe-encrypting [{'#' * 15}{'-' * 15}] 3/6 rows\n{report}" if output.isatty() else report
    assert expected in output.getvalue()
    assert "Every stored token" not in output.getvalue()  # 3 rows are still under the old key
    assert rotate_keys().rotated == 3


def refresh_in_another_worker(token: CloudSyncToken, outcome: dict[str, Any]) -> None:
    """Refresh ``token`` in another thread, on its own connection as another worker would, and wait."""

    def refresh() -> None:
        try:
            outcome["refreshed"] = tokens.refresh_if_expired(token)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            connections.close_all()

    worker = threading.Thread(target=refresh)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive()


def before_first_write(action: Callable[[], object]) -> Callable[..., Any]:
    """A database execute wrapper on the command's connection: runs ``action`` once, just
    before the command's first write (after it read the row, before its compare-and-swap)."""
    done = False

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal done
        if not done and sql.startswith("UPDATE") and "access_token_ciphertext" in sql:
            done = True
            action()
        return execute(sql, params, many, context)

    return wrapper


def test_a_refresh_landing_mid_batch_is_not_overwritten(
    on_each_database: str, client: Any, fake: Any, settings: Any
) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    token = expire(signed_in(client))
    old_tokens = (token.access_token(), token.refresh_token())
    others = make_rows(9)  # in the same batch as the refreshed row
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]  # the site and the command, deployed
    outcome: dict[str, Any] = {}
    connection = connections[router.db_for_write(CloudSyncToken)]

    # The batch is read, then the refresh commits, then the batch is written.
    with connection.execute_wrapper(before_first_write(lambda: refresh_in_another_worker(token, outcome))):
        result = rotate_keys(batch_size=10)

    assert "error" not in outcome
    refreshed = outcome["refreshed"]
    assert fake.counters["refreshes"] == 1
    # The refresh wrote under the new key: nothing to redo for its row, the batch's others rotated.
    assert (result.examined, result.rotated, result.current, result.contended) == (10, 9, 1, [])
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY]
    stored = CloudSyncToken.objects.get(pk=token.pk)
    assert stored.version == token.version + 1
    assert stored.access_token() == refreshed.access_token() != old_tokens[0]
    assert stored.refresh_token() == refreshed.refresh_token() != old_tokens[1]
    assert {pk: pair for pk, pair in readable_tokens().items() if pk != token.pk} == others
    # The stored refresh token is the live one: the next refresh works.
    tokens.refresh_if_expired(expire(token))
    assert fake.counters["refreshes"] == 2
    assert fake.counters["invalid_grants"] == 0


def test_a_refresh_by_a_worker_still_on_the_old_key_is_re_encrypted_after_it(
    on_each_database: str, client: Any, fake: Any, settings: Any
) -> None:
    # During a rolling deploy a worker may still encrypt with the old key: its write wins the
    # race, and the command retries the row with the refreshed tokens.
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    token = expire(signed_in(client))
    others = make_rows(4)
    outcome: dict[str, Any] = {}
    connection = connections[router.db_for_write(CloudSyncToken)]
    command_keys = [NEW_KEY, OLD_KEY]

    def refresh_by_a_worker_on_the_old_key() -> None:
        settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]  # that worker's settings
        try:
            refresh_in_another_worker(token, outcome)
        finally:
            settings.CLOUDSYNC_ENCRYPTION_KEYS = command_keys

    settings.CLOUDSYNC_ENCRYPTION_KEYS = command_keys
    with connection.execute_wrapper(before_first_write(refresh_by_a_worker_on_the_old_key)):
        result = rotate_keys()

    assert "error" not in outcome
    assert (result.rotated, result.current, result.contended) == (5, 0, [])
    refreshed = (outcome["refreshed"].access_token(), outcome["refreshed"].refresh_token())
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY]
    stored = CloudSyncToken.objects.get(pk=token.pk)
    assert set(map(frozenset, key_ids_in_use().values())) == {frozenset({NEW_ID})}
    assert stored.version == token.version + 1
    assert (stored.access_token(), stored.refresh_token()) == refreshed
    assert {pk: pair for pk, pair in readable_tokens().items() if pk != token.pk} == others


def before_each_write(action: Callable[[], object]) -> Callable[..., Any]:
    """A database execute wrapper: runs ``action`` (on the same connection, inside the batch's
    transaction) just before each of the command's ciphertext UPDATEs."""
    acting = False

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal acting
        if not acting and sql.startswith("UPDATE") and "access_token_ciphertext" in sql:
            acting = True
            try:
                action()
            finally:
                acting = False
        return execute(sql, params, many, context)

    return wrapper


def test_a_row_changed_on_every_attempt_is_reported_and_left_to_its_writer(
    on_each_database: str, settings: Any
) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    plaintexts = make_rows(6)
    busy = sorted(plaintexts)[2]
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    connection = connections[router.db_for_write(CloudSyncToken)]

    def refreshed_again() -> None:  # what a refresh does to the row, as far as the CAS can tell
        CloudSyncToken.objects.filter(pk=busy).update(version=F("version") + 1)

    with connection.execute_wrapper(before_each_write(refreshed_again)):
        result = rotate_keys()

    assert (result.examined, result.rotated, result.contended) == (6, 5, [str(busy)])
    assert not result.complete
    assert key_ids_in_use()[busy] == {OLD_ID}  # never overwritten
    assert sum(ids == {NEW_ID} for ids in key_ids_in_use().values()) == 5
    assert CloudSyncToken.objects.get(pk=busy).version == 1 + rotation.MAX_ATTEMPTS_PER_ROW


def test_a_row_deleted_mid_batch_is_counted_as_gone(on_each_database: str, settings: Any) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    plaintexts = make_rows(4)
    disconnected = sorted(plaintexts)[1]
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    connection = connections[router.db_for_write(CloudSyncToken)]

    with connection.execute_wrapper(
        before_first_write(lambda: CloudSyncToken.objects.filter(pk=disconnected).delete())
    ):
        result = rotate_keys()

    assert (result.examined, result.rotated, result.gone, result.contended) == (4, 3, 1, [])
    assert result.complete
    assert set(key_ids_in_use()) == set(plaintexts) - {disconnected}


def test_the_command_reports_rows_deleted_while_it_ran(settings: Any) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    disconnected = sorted(make_rows(4))[1]
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    connection = connections[router.db_for_write(CloudSyncToken)]

    with connection.execute_wrapper(
        before_first_write(lambda: CloudSyncToken.objects.filter(pk=disconnected).delete())
    ):
        output = rotate()

    assert "Re-encrypted 3 rows" in output
    assert "1 rows were deleted while the command ran." in output
    assert f"Every stored token is under key {NEW_ID}." in output


def test_the_command_fails_naming_the_rows_that_changed_on_every_attempt(settings: Any) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    busy = sorted(make_rows(3))[0]
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    connection = connections[router.db_for_write(CloudSyncToken)]
    output = io.StringIO()

    def refreshed_again() -> None:
        CloudSyncToken.objects.filter(pk=busy).update(version=F("version") + 1)

    with (
        connection.execute_wrapper(before_each_write(refreshed_again)),
        pytest.raises(CommandError) as raised,
    ):
        rotate(stdout=output)

    assert raised.value.returncode == 1
    assert (
        str(raised.value)
        == f"1 rows changed too often while the command ran ({busy}); run the command again."
    )
    assert "Re-encrypted 2 rows" in output.getvalue()
    assert "Every stored token" not in output.getvalue()


def test_the_command_stopped_at_its_limit_says_to_run_it_again(settings: Any) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    make_rows(5)
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]

    first = rotate("--limit", "2")
    second = rotate()

    assert "Re-encrypted 2 rows" in first
    assert "Stopped at --limit: run the command again to continue." in first
    assert "Every stored token" not in first
    assert "Re-encrypted 3 rows" in second
    assert "2 were already under it" in second
    assert "Stopped at --limit" not in second


def test_rows_without_a_refresh_token_rotate_and_check_by_their_access_token(
    on_each_database: str, settings: Any
) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    plaintexts = make_rows(3)
    CloudSyncToken.objects.update(refresh_token_ciphertext="")  # CloudSync issued none
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]

    before = rotation.check_keys()
    result = rotation.rotate_keys()
    after = rotation.check_keys()

    assert (before.examined, before.stale, before.rows_per_key) == (3, 3, {OLD_ID: 3})
    assert (result.rotated, result.complete) == (3, True)
    assert (after.stale, after.rows_per_key) == (0, {NEW_ID: 3})
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY]
    assert readable_tokens() == {pk: (access, None) for pk, (access, _refresh) in plaintexts.items()}


@pytest.mark.parametrize("option", ["batch_size", "limit"])
def test_the_engine_refuses_a_batch_size_or_limit_below_one(option: str) -> None:
    options: dict[str, Any] = {option: 0}
    with pytest.raises(ValueError, match=f"{option} must be at least 1"):
        rotation.KeyRotation(**options)


def add_unreadable_rows(settings: Any) -> tuple[uuid.UUID, uuid.UUID]:
    """One row under a key nobody configured, one whose ciphertext was copied from another row."""
    keys = settings.CLOUDSYNC_ENCRYPTION_KEYS
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [STRAY_KEY]
    (stray,) = make_rows(1, prefix="usr_stray")
    settings.CLOUDSYNC_ENCRYPTION_KEYS = keys
    donor, moved = make_rows(2, prefix="usr_moved")
    CloudSyncToken.objects.filter(pk=moved).update(
        access_token_ciphertext=CloudSyncToken.objects.get(pk=donor).access_token_ciphertext
    )
    return stray, moved


def test_rows_no_key_can_decrypt_are_reported_by_id_kept_and_fail_the_command(settings: Any) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    make_rows(5)
    stray, moved = add_unreadable_rows(settings)
    untouched = {pk: ciphertexts()[pk] for pk in (stray, moved)}
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    stdout, stderr = io.StringIO(), io.StringIO()

    with pytest.raises(CommandError) as raised:
        rotate("--batch-size", "2", stdout=stdout, stderr=stderr)

    assert raised.value.returncode == 1
    assert "2 rows cannot be decrypted" in str(raised.value)
    errors_text = stderr.getvalue()
    assert f"Row {stray} (CloudSync account usr_stray_0)" in errors_text
    assert f"No configured key has id {STRAY_ID}" in errors_text
    assert f"Row {moved} (CloudSync account usr_moved_1)" in errors_text
    assert "Re-encrypted 6 rows" in stdout.getvalue()  # the readable rows were rotated all the same
    assert {pk: ciphertexts()[pk] for pk in (stray, moved)} == untouched  # kept as they were
    assert CloudSyncToken.objects.count() == 8


def test_check_counts_rows_per_key_changes_nothing_and_passes_when_all_are_readable(settings: Any) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    make_rows(4, prefix="usr_old")
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    make_rows(3, prefix="usr_new")
    before = ciphertexts()
    connection = connections[router.db_for_write(CloudSyncToken)]

    with CaptureQueriesContext(connection) as queries:
        result = rotation.check_keys(batch_size=2)

    assert result.rows_per_key == {NEW_ID: 3, OLD_ID: 4}
    assert (result.examined, result.stale, result.unreadable) == (7, 4, [])
    assert ciphertexts() == before
    assert not [q for q in queries.captured_queries if not q["sql"].startswith("SELECT")]


def test_check_reports_unreadable_rows_by_id_and_exits_non_zero(settings: Any) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY]
    make_rows(3)
    stray, moved = add_unreadable_rows(settings)

    result = rotation.check_keys()

    assert sorted(row.pk for row in result.unreadable) == sorted([str(stray), str(moved)])
    assert result.rows_per_key == {NEW_ID: 4}
    with pytest.raises(CommandError) as raised:
        rotate("--check")
    assert raised.value.returncode == 1
    assert CloudSyncToken.objects.count() == 6


#: How Django's query log names a statement run for many parameter sets (``executemany``).
EXECUTEMANY = re.compile(r"^\d+ times: ")
#: What PostgreSQL's batches also run: the bound on row lock waits in their transaction.
LOCK_BOUND = "set_config('lock_timeout'"


def test_each_batch_takes_the_same_few_queries_whatever_the_row_count(
    on_each_database: str, settings: Any
) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    make_rows(2000)
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    connection = connections[router.db_for_write(CloudSyncToken)]
    per_batch: list[list[str]] = []

    with CaptureQueriesContext(connection) as queries:
        for _ in (run := rotation.KeyRotation(batch_size=500)).batches():
            per_batch.append([q["sql"] for q in queries.captured_queries[sum(map(len, per_batch)) :]])
        after_last = [q["sql"] for q in queries.captured_queries[sum(map(len, per_batch)) :]]

    assert run.result.rotated == 2000
    assert len(per_batch) == 4
    # Keyset pagination: one read of at most 500 rows per batch, then one that finds the end.
    reads = [
        [sql for sql in batch if sql.startswith("SELECT") and LOCK_BOUND not in sql] for batch in per_batch
    ]
    assert all(len(batch) == 1 and re.search(r"LIMIT 500\b", batch[0]) for batch in reads)
    assert "OFFSET" not in " ".join(sql for batch in per_batch for sql in batch)
    assert [sql.split()[0] for sql in after_last] == ["SELECT"]
    # The batch's writes: one UPDATE on PostgreSQL, one prepared UPDATE run for each row on
    # SQLite (Django logs it once, as "500 times: UPDATE ..."), elsewhere one per 128 rows (four),
    # and the same count for every batch.
    chunk = rotation.rows_per_update(on_each_database) or 500
    assert chunk in (128, 500)
    writes = [[sql for sql in batch if EXECUTEMANY.sub("", sql).startswith("UPDATE")] for batch in per_batch]
    if connection.vendor == "sqlite":
        assert all(sql.startswith("500 times: UPDATE") for batch in writes for sql in batch)
    assert [len(batch) for batch in writes] == [-(-500 // chunk)] * 4
    assert len({len(batch) for batch in per_batch}) == 1  # nothing else that grows with the rows
    assert len(per_batch[0]) <= 1 + len(writes[0]) + 3  # transaction control and the lock bound at most
    assert {frozenset(ids) for ids in key_ids_in_use().values()} == {frozenset({NEW_ID})}


def peak_memory_of_rotating(rows: int, settings: Any) -> int:
    """tracemalloc's peak, in bytes, while ``rows`` rows under the old key are rotated."""
    CloudSyncToken.objects.all().delete()
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    make_rows(rows, prefix=f"usr_memory_{rows}")
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    gc.collect()
    tracemalloc.start()
    try:
        result = rotate_keys()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.rotated == rows
    return peak


def test_memory_stays_flat_from_ten_thousand_rows_to_fifty_thousand(settings: Any) -> None:
    ten_thousand = peak_memory_of_rotating(10_000, settings)
    fifty_thousand = peak_memory_of_rotating(50_000, settings)

    # One batch at a time: five times the rows, about the same peak. Holding every row would
    # take about five times as much (tens of megabytes at 50,000 rows).
    assert fifty_thousand < ten_thousand * 1.5, (ten_thousand, fifty_thousand)


def test_a_progress_bar_is_drawn_only_on_a_terminal(settings: Any) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    make_rows(6)
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]

    on_terminal = rotate("--batch-size", "2", stdout=Terminal())
    in_a_pipe = rotate("--check", "--batch-size", "2")

    assert "\r" in on_terminal
    assert f"[{'#' * 30}] 6/6 rows" in on_terminal
    assert "Re-encrypted 6 rows" in on_terminal
    assert "\r" not in in_a_pipe
    assert "#" not in in_a_pipe


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--database", "nowhere"], "There is no database 'nowhere'"),
    ],
)
def test_bad_options_are_refused_with_a_message(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=re.escape(message)):
        rotate(*args)


def test_without_keys_the_command_says_what_to_set(settings: Any) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = []

    with pytest.raises(CommandError, match="CLOUDSYNC_ENCRYPTION_KEYS"):
        rotate()


def test_a_malformed_key_is_refused_without_printing_it(settings: Any) -> None:
    malformed = NEW_KEY[:-4] + "!!!="
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [malformed, OLD_KEY]

    with pytest.raises(CommandError) as raised:
        rotate()

    assert malformed not in str(raised.value)
    assert OLD_KEY not in str(raised.value)


def test_the_output_never_contains_a_token_or_key(settings: Any) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    plaintexts = make_rows(3)
    add_unreadable_rows(settings)
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    stored = ciphertexts()
    stdout, stderr = Terminal(), io.StringIO()

    with pytest.raises(CommandError) as raised:
        rotate(stdout=stdout, stderr=stderr)
    with pytest.raises(CommandError):
        rotate("--check", stdout=stdout, stderr=stderr)

    text = stdout.getvalue() + stderr.getvalue() + str(raised.value)
    secrets = [
        *(s for pair in plaintexts.values() for s in pair),
        *(s for pair in stored.values() for s in pair),
    ]
    for secret in [*secrets, OLD_KEY, NEW_KEY, STRAY_KEY]:
        assert not secret or secret not in text


def sqlite_rows_to_rotate(count: int, settings: Any) -> Any:
    """``count`` rows under the old key on SQLite, the new key first; SQLite's connection."""
    connection = connections[router.db_for_write(CloudSyncToken)]
    if connection.vendor != "sqlite":
        pytest.skip("rowid is SQLite's")
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    make_rows(count)
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    return connection


def test_on_sqlite_rows_are_visited_in_the_tables_own_rowid_order(settings: Any) -> None:
    connection = sqlite_rows_to_rotate(30, settings)
    table = connection.ops.quote_name(CloudSyncToken._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {table} ORDER BY rowid")  # noqa: S608 (our own name)
        stored_order = [uuid.UUID(pk) for (pk,) in cursor.fetchall()]
    assert stored_order != sorted(stored_order)  # random UUIDs: pk order is not the table's

    visited = [row.pk for batch in rotation.KeyRotation(batch_size=7)._pages() for row in batch]

    assert visited == stored_order
    assert rotate_keys(batch_size=7).rotated == 30


def test_on_sqlite_a_row_whose_rowid_went_to_another_row_mid_batch_is_not_written(settings: Any) -> None:
    # SQLite gives a new row the highest rowid plus one: delete the last row, and the next row
    # created takes its rowid. The write finds rows by rowid but also checks their pk.
    connection = sqlite_rows_to_rotate(5, settings)
    last, last_rowid = [(row.pk, row.position) for batch in rotation.KeyRotation()._pages() for row in batch][
        -1
    ]
    newcomer: dict[uuid.UUID, tuple[str, str]] = {}

    def replace_the_last_row() -> None:
        CloudSyncToken.objects.filter(pk=last).delete()
        settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]  # a worker still on the old key
        try:
            newcomer.update(make_rows(1, prefix="usr_newcomer"))
        finally:
            settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]

    with connection.execute_wrapper(before_first_write(replace_the_last_row)):
        result = rotate_keys()

    assert (result.rotated, result.gone) == (4, 1)
    (newcomer_pk,) = newcomer
    assert [row.position for row in rotation._read_rows(connection.alias, pks=[newcomer_pk.hex])] == [
        last_rowid
    ]
    assert key_ids_in_use()[newcomer_pk] == {OLD_ID}  # its own tokens, not the gone row's
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    assert readable_tokens()[newcomer_pk] == newcomer[newcomer_pk]
    assert rotate_keys().rotated == 1


def test_the_associated_data_the_rotation_builds_is_the_models_own() -> None:
    associated_data = rotation._associated_data_by_pk()
    row = CloudSyncToken(pk=uuid.uuid4())

    for field in rotation.TOKEN_FIELDS:
        assert associated_data(str(row.pk), field) == row.associated_data(field)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_a_row_with_one_token_already_under_the_new_key_keeps_it_and_rotates_the_other(
    on_each_database: str, settings: Any, batch_size: int
) -> None:
    # A batch where one column has nothing to write for any row (on PostgreSQL: an array of
    # NULLs, or of one NULL, which the server gets as an empty string).
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OLD_KEY]
    plaintexts = make_rows(4)
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    for row in CloudSyncToken.objects.all():
        row.refresh_token_ciphertext = conf.cipher().encrypt(
            plaintexts[row.pk][1], row.associated_data("refresh_token")
        )
        row.save(update_fields=["refresh_token_ciphertext"])
    already = {pk: refresh for pk, (_access, refresh) in ciphertexts().items()}

    result = rotate_keys(batch_size=batch_size)

    assert (result.rotated, result.complete) == (4, True)
    assert {pk: refresh for pk, (_access, refresh) in ciphertexts().items()} == already
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [NEW_KEY]
    assert readable_tokens() == plaintexts
