"""The key-rotation engine: re-encrypt every stored token under the first key, safely while the site runs.

A key is rotated in three steps: put a new key first in ``CLOUDSYNC_ENCRYPTION_KEYS`` (keeping
the old one after it) and deploy; run the rotation (``manage.py cloudsync_rotate_keys``, or
:func:`rotate_keys`); remove the old key and deploy again.

The rotation is safe to run while the site serves requests, and to run again after it was
interrupted:

* Rows are read in batches (keyset pagination), never all at once; each batch commits on its
  own, so an interruption loses at most the batch in flight. They are visited in the table's own
  order: by primary key where the table is stored in that order (MySQL/MariaDB's InnoDB) or
  where rows move when updated (PostgreSQL), by ``rowid`` on SQLite, whose rows are stored in
  ``rowid`` order while the primary key is a random UUID: in pk order each batch would rewrite
  about one page per row, in ``rowid`` order a few rows' worth of pages.
* A row whose ciphertexts are already under the first key is skipped, so a second run finishes
  the job without re-encrypting anything twice.
* A batch is re-encrypted in Python and written in one UPDATE (PostgreSQL: the batch as arrays;
  SQLite: one prepared statement run for each row; elsewhere a few, within the database's limit
  on query parameters), with a compare-and-swap on ``version`` for each row: a row
  that a refresh wrote between our read and our write keeps the refresh's tokens, and is read
  again (the refresh's tokens are then usually under the first key already) and retried. So a
  batch costs the same few queries whatever the table's size. ``version`` itself is left alone,
  because it means "new tokens", and the refresh logic compares it.
* A row that no configured key can decrypt is reported by id and left as it is, never dropped.

:func:`check_keys` changes nothing: it counts rows per key id, and the rows no key can decrypt.
Both return a :class:`Tally`; :class:`KeyRotation` runs batch by batch for a caller that shows
progress or may be interrupted.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from django.db import connections, router

from . import conf, errors
from .crypto import TokenCipher
from .locking import with_lock_retries
from .models import CloudSyncToken

# A thousand rows: a commit (an fsync) per thousand rows costs little beside their encryption,
# and a batch's write lock or row locks last milliseconds.
DEFAULT_BATCH_SIZE = 1000
#: How many times one row is tried when concurrent refreshes keep changing it under us.
MAX_ATTEMPTS_PER_ROW = 5
#: The columns the rotation reads: enough to re-encrypt and to name a row, nothing more.
ROW_FIELDS = ("id", "account_id", "version", "access_token_ciphertext", "refresh_token_ciphertext")
TOKEN_FIELDS = ("access_token", "refresh_token")
TOKEN_COLUMNS = tuple(f"{field}_ciphertext" for field in TOKEN_FIELDS)


class StoredRow(NamedTuple):
    """The columns of one row the rotation reads (:data:`ROW_FIELDS`), as plain values: a model
    instance per row would cost more than the row's encryption."""

    pk: uuid.UUID
    account_id: str
    version: int
    access_token_ciphertext: str
    refresh_token_ciphertext: str
    #: The primary key as the database gives and takes it (SQLite, MySQL: 32 hex digits).
    db_pk: Any
    #: Where the next page starts after this row: SQLite's ``rowid``, elsewhere ``db_pk``.
    position: Any


@dataclasses.dataclass
class Unreadable:
    """A row no configured key can decrypt, named without any of its ciphertexts."""

    pk: str
    account_id: str
    reason: str


@dataclasses.dataclass
class Tally:
    """What a run did, so far; only batches that committed are counted."""

    examined: int = 0
    rotated: int = 0
    current: int = 0
    gone: int = 0
    contended: list[str] = dataclasses.field(default_factory=list)
    unreadable: list[Unreadable] = dataclasses.field(default_factory=list)
    rows_per_key: Counter[str] = dataclasses.field(default_factory=Counter)
    stale: int = 0  # check: rows with a ciphertext not under the first key
    limit_reached: bool = False

    @property
    def complete(self) -> bool:
        """Whether every row is now under the first key (nothing unreadable, contended or left)."""
        return not self.limit_reached and not self.unreadable and not self.contended

    def add(self, other: Tally) -> None:
        self.examined += other.examined
        self.rotated += other.rotated
        self.current += other.current
        self.gone += other.gone
        self.contended += other.contended
        self.unreadable += other.unreadable
        self.rows_per_key += other.rows_per_key
        self.stale += other.stale
        self.limit_reached = self.limit_reached or other.limit_reached


class KeyRotation:
    """One run over ``database`` (default: where :class:`CloudSyncToken` is written).

    ``check=True`` only counts. :meth:`batches` works batch by batch and keeps the running total
    in :attr:`result`, which stays right if the run is interrupted between or inside batches.
    """

    def __init__(
        self,
        *,
        database: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        limit: int | None = None,
        check: bool = False,
        cipher: TokenCipher | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1")
        self.database = database or router.db_for_write(CloudSyncToken)
        self.batch_size = batch_size
        self.limit = limit
        self.check = check
        self.cipher = cipher if cipher is not None else conf.cipher()
        self.result = Tally()
        self._associated_data = _associated_data_by_pk()

    def row_count(self) -> int:
        """How many rows there are to examine (for a progress bar; rows may come and go)."""
        return CloudSyncToken.objects.using(self.database).count()

    def run(self) -> Tally:
        """Work through every batch; the :class:`Tally` of the whole run."""
        for _ in self.batches():
            pass
        return self.result

    def batches(self) -> Iterator[Tally]:
        """Work batch by batch, yielding each committed batch's :class:`Tally`."""
        for batch in self._pages():
            done = self._check_batch(batch) if self.check else self._rotate_batch(batch)
            self.result.add(done)
            yield done
            if self.result.limit_reached:
                return

    # Reading: keyset pagination in the table's own order, so memory stays at one batch.

    def _pages(self) -> Iterator[list[StoredRow]]:
        last = None
        while True:
            batch = _read_rows(self.database, after=last, limit=self.batch_size)
            if batch:
                yield batch
            if len(batch) < self.batch_size:
                return
            last = batch[-1].position

    def _check_batch(self, batch: list[StoredRow]) -> Tally:
        tally = Tally(examined=len(batch))
        for row in batch:
            try:
                key_ids = _verified_key_ids(self.cipher, row, self._associated_data)
            except errors.UndecryptableToken as exc:
                tally.unreadable.append(_unreadable(row, exc))
                continue
            tally.rows_per_key.update(key_ids)
            if key_ids != {self.cipher.primary_key_id}:
                tally.stale += 1
        return tally

    def _rotate_batch(self, batch: list[StoredRow]) -> Tally:
        def rotate() -> Tally:
            # Rebuilt from scratch on each attempt: a batch retried after "database is locked"
            # was rolled back, and must not be counted twice.
            done = Tally()
            pending: list[Resealed] = []
            for row in batch:
                if self.limit is not None and self.result.rotated + len(pending) >= self.limit:
                    done.limit_reached = True
                    break
                done.examined += 1
                self._sort(done, pending, row)
            for _ in range(MAX_ATTEMPTS_PER_ROW):
                if not pending:
                    break
                pending = self._write(done, pending)
            done.contended += [str(resealed.row.pk) for resealed in pending]
            return done

        # One transaction per batch (one commit, not one per row); a lock another worker holds
        # (SQLite's write lock, a row lock) is waited for at most CLOUDSYNC_LOCK_TIMEOUT.
        return with_lock_retries(self.database, rotate)

    def _write(self, done: Tally, pending: list[Resealed]) -> list[Resealed]:
        """Write ``pending`` where each row's version is still the one read; the rows to try again.

        A row whose version moved was refreshed meanwhile: it is read again (its new tokens are
        usually under the first key already), and never overwritten.
        """
        written = sum(_write_if_unchanged(self.database, chunk) for chunk in self._chunks(pending))
        if written == len(pending):
            done.rotated += written
            return []
        # Some rows changed since they were read: tell which by what they hold now. Each new
        # ciphertext has a nonce of its own, so a row holds it only if our write went in; and our
        # write's row locks (SQLite: its write lock) keep those rows as they are until we commit.
        now = {row.pk: row for row in _read_rows(self.database, pks=[r.row.db_pk for r in pending])}
        retry: list[Resealed] = []
        for resealed in pending:
            fresh = now.get(resealed.row.pk)
            if fresh is None:
                done.gone += 1
            elif all(getattr(fresh, column) == value for column, value in resealed.changes.items()):
                done.rotated += 1
            else:
                self._sort(done, retry, fresh)
        return retry

    def _sort(self, done: Tally, pending: list[Resealed], row: StoredRow) -> None:
        """Count ``row`` as current or unreadable in ``done``, or add its new ciphertexts to ``pending``."""
        try:
            changes = _resealed(self.cipher, row, self._associated_data)
        except errors.UndecryptableToken as exc:
            done.unreadable.append(_unreadable(row, exc))
            return
        if changes:
            pending.append(Resealed(row, changes))
        else:
            done.current += 1

    def _chunks(self, pending: list[Resealed]) -> Iterator[list[Resealed]]:
        """``pending`` in as few UPDATEs as :func:`rows_per_update` allows."""
        size = rows_per_update(self.database) or len(pending)
        for start in range(0, len(pending), size):
            yield pending[start : start + size]


def rows_per_update(database: str) -> int | None:
    """How many rows one UPDATE of a batch writes on ``database`` (``None``: the whole batch).

    PostgreSQL takes a batch as four arrays, SQLite as one prepared statement run for each row.
    Elsewhere each row takes :data:`PARAMS_PER_ROW` parameters, within the database's limit, and
    the server matches every row against every ``WHEN`` of the ``CASE``: so at most
    :data:`CASE_ROWS` rows a statement.
    """
    connection = connections[database]
    if connection.vendor in ("postgresql", "sqlite"):
        return None
    max_params = connection.features.max_query_params
    return min(CASE_ROWS, max(1, (max_params or CASE_ROWS * PARAMS_PER_ROW) // PARAMS_PER_ROW))


@dataclasses.dataclass(frozen=True)
class Resealed:
    """A row as read, and its new ciphertexts (by column) not yet written."""

    row: StoredRow
    changes: dict[str, str]


#: Query parameters one row takes in :func:`_write_if_unchanged_with_case`'s UPDATE: its pk in the
#: ``IN`` list, its pk and version in the version check, its pk and ciphertext for each token column.
PARAMS_PER_ROW = 3 + 2 * len(TOKEN_FIELDS)
CASE_ROWS = 128
#: Primary keys one re-read of changed rows names, within SQLite's 999 query parameters.
PKS_PER_READ = 500


def _read_rows(
    database: str, *, after: Any = None, limit: int = DEFAULT_BATCH_SIZE, pks: list[Any] | None = None
) -> list[StoredRow]:
    """The rows after position ``after``, at most ``limit``, in the table's order; or the rows
    whose primary keys (as the database stores them) are ``pks``.

    Raw SQL, not the ORM: the ORM cannot order by SQLite's ``rowid``, and its per-row work would
    cost about as much as the row's encryption.
    """
    connection = connections[database]
    table, pk_column, _ = _names(database)
    quote = connection.ops.quote_name
    # SQLite stores a table in rowid order, and its random UUID primary key is a separate index.
    position = "rowid" if connection.vendor == "sqlite" else pk_column
    columns = ", ".join([position, *map(quote, ROW_FIELDS)])
    select = f"SELECT {columns} FROM {table}"  # noqa: S608 (our own names)
    rows: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        if pks is not None:
            for start in range(0, len(pks), PKS_PER_READ):
                chunk = pks[start : start + PKS_PER_READ]
                cursor.execute(f"{select} WHERE {pk_column} IN ({', '.join(['%s'] * len(chunk))})", chunk)
                rows += cursor.fetchall()
        else:
            where, params = ("", []) if after is None else (f" WHERE {position} > %s", [after])
            cursor.execute(f"{select}{where} ORDER BY {position} LIMIT {int(limit)}", params)
            rows = cursor.fetchall()
    return [
        StoredRow(
            pk if isinstance(pk, uuid.UUID) else uuid.UUID(pk), account_id, version, access, refresh, pk, at
        )
        for at, pk, account_id, version, access, refresh in rows
    ]


def _write_if_unchanged(database: str, pending: list[Resealed]) -> int:
    """Write every row's new ciphertexts, each only if its ``version`` is the one we read (a
    compare-and-swap per row); how many rows it wrote.

    ``version`` and ``updated_at`` are left alone: they mean "new tokens", and a rotation brings
    none (``refresh_after_rejection`` compares ``version``).
    """
    vendor = connections[database].vendor
    if vendor == "postgresql":
        return _write_if_unchanged_from_arrays(database, pending)
    if vendor == "sqlite":
        return _write_if_unchanged_by_rowid(database, pending)
    return _write_if_unchanged_with_case(database, pending)


def _write_if_unchanged_by_rowid(database: str, pending: list[Resealed]) -> int:
    """:func:`_write_if_unchanged` on SQLite: one short UPDATE, prepared once and run for each row
    (``executemany``: no statement to parse per row, no ``CASE`` to match). The row is found by
    its ``rowid`` (no index to walk) and must still have its primary key: a ``VACUUM`` may renumber
    rowids, and a deleted row's rowid may be given to a new row, which is then left alone."""
    connection = connections[database]
    quote = connection.ops.quote_name
    table, pk_column, version_column = _names(database)
    sets = ", ".join(f"{quote(column)} = COALESCE(%s, {quote(column)})" for column in TOKEN_COLUMNS)
    sql = (
        f"UPDATE {table} SET {sets} "  # noqa: S608 (our own names)
        f"WHERE rowid = %s AND {pk_column} = %s AND {version_column} = %s"
    )
    params = [
        (*(resealed.changes.get(column) for column in TOKEN_COLUMNS), row.position, row.db_pk, row.version)
        for resealed in pending
        for row in (resealed.row,)
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
        # sqlite3 sums the rows each run changed.
        return int(cursor.rowcount)


def _write_if_unchanged_with_case(database: str, pending: list[Resealed]) -> int:
    """:func:`_write_if_unchanged` elsewhere (MySQL, MariaDB): one UPDATE with a ``CASE`` per
    column, the version check a ``CASE`` too (``executemany`` would be a round trip per row)."""
    connection = connections[database]
    quote = connection.ops.quote_name
    table, pk_column, version_column = _names(database)
    assignments: list[str] = []
    params: list[Any] = []
    for column in TOKEN_COLUMNS:
        changed = [resealed for resealed in pending if column in resealed.changes]
        if changed:
            assignments.append(
                f"{quote(column)} = CASE {pk_column} {' '.join(['WHEN %s THEN %s'] * len(changed))} "
                f"ELSE {quote(column)} END"
            )
            for resealed in changed:
                params += [resealed.row.db_pk, resealed.changes[column]]
    in_list = ", ".join(["%s"] * len(pending))
    params += [resealed.row.db_pk for resealed in pending]
    expected = " ".join(["WHEN %s THEN %s"] * len(pending))
    for resealed in pending:
        params += [resealed.row.db_pk, resealed.row.version]
    sql = (
        f"UPDATE {table} SET {', '.join(assignments)} "  # noqa: S608 (our own names)
        f"WHERE {pk_column} IN ({in_list}) AND {version_column} = CASE {pk_column} {expected} END"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def _write_if_unchanged_from_arrays(database: str, pending: list[Resealed]) -> int:
    """:func:`_write_if_unchanged` on PostgreSQL: the batch as four arrays joined to the table,
    four parameters whatever the batch's size (binding one parameter per value costs more than
    the UPDATE itself). A NULL ciphertext keeps the column as it is.

    Each array is sent as one comma-separated string that the server splits: psycopg's client-side
    binding would quote each element of a list on its own, a regular expression per value. No
    value can hold a comma: a UUID, a number, a ciphertext (``v1$<hex>$<URL-safe base64>``) we
    just sealed; an empty field is NULL (a sealed ciphertext is never empty). A batch of one row
    with nothing for a column sends ``''``, which splits into an empty array, and ``unnest`` pads
    the shorter arrays with NULL: the column is kept all the same.
    """
    connection = connections[database]
    quote = connection.ops.quote_name
    table, pk_column, version_column = _names(database)
    columns = TOKEN_COLUMNS
    sets = ", ".join(
        f"{quote(column)} = COALESCE(new.{column}, {table}.{quote(column)})" for column in columns
    )
    sql = (
        f"UPDATE {table} SET {sets} "  # noqa: S608 (our own names)
        "FROM unnest(string_to_array(%s, ',')::uuid[], string_to_array(%s, ',')::bigint[], "
        f"{', '.join([STRING_TO_TEXT_ARRAY] * len(columns))}) "
        f"AS new(pk, version, {', '.join(columns)}) "
        f"WHERE {table}.{pk_column} = new.pk AND {table}.{version_column} = new.version"
    )
    params = [
        ",".join([str(resealed.row.pk) for resealed in pending]),
        ",".join([str(resealed.row.version) for resealed in pending]),
        *(",".join([resealed.changes.get(column) or "" for resealed in pending]) for column in columns),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


#: A text array from one comma-separated parameter, its empty fields NULL.
STRING_TO_TEXT_ARRAY = "string_to_array(%s, ',', '')"


def _names(database: str) -> tuple[str, str, str]:
    """The quoted names of the table, its primary key column and its ``version`` column."""
    quote = connections[database].ops.quote_name
    meta = CloudSyncToken._meta
    return (
        quote(meta.db_table),
        quote(meta.pk.column or meta.pk.attname),
        quote(meta.get_field("version").column or "version"),
    )


def rotate_keys(
    *, database: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE, limit: int | None = None
) -> Tally:
    """Re-encrypt every stored token not yet under the first key (at most ``limit`` rows)."""
    return KeyRotation(database=database, batch_size=batch_size, limit=limit).run()


def check_keys(*, database: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> Tally:
    """Count the rows under each key id, and the rows no configured key can decrypt; change nothing."""
    return KeyRotation(database=database, batch_size=batch_size, check=True).run()


def _associated_data_by_pk() -> Callable[[str, str], bytes]:
    """The model's own :meth:`~CloudSyncToken.associated_data` for a row known by its pk's text
    alone, so the format has one home.

    The model is asked once per field, for a stand-in pk: where its output is the pk's text with
    the same bytes around it for two different pks, a row's associated data is those bytes around
    its pk (a concatenation, not an unsaved instance per token). Otherwise the model is asked for
    every token.
    """
    stand_in = CloudSyncToken()

    def of_model(pk: str, field: str) -> bytes:
        stand_in.pk = uuid.UUID(pk)
        return stand_in.associated_data(field)

    samples = (str(uuid.UUID(int=0x0123456789ABCDEF0123456789ABCDEF)), str(uuid.UUID(int=2**128 - 1)))
    around: dict[str, tuple[bytes, bytes]] = {}
    for field in TOKEN_FIELDS:
        before, _, after = of_model(samples[0], field).partition(samples[0].encode("ascii"))
        if any(of_model(pk, field) != before + pk.encode("ascii") + after for pk in samples):
            # Never taken while the model's format is the pk between fixed bytes (test_rotate_keys
            # holds the two to the same output); a future format stays correct, one call a token.
            return of_model  # pragma: no cover
        around[field] = (before, after)

    def associated_data(pk: str, field: str) -> bytes:
        before, after = around[field]
        return before + pk.encode("ascii") + after

    return associated_data


def _resealed(
    cipher: TokenCipher, row: StoredRow, associated_data_of: Callable[[str, str], bytes]
) -> dict[str, str]:
    """The new ciphertexts of ``row``'s tokens that are not under the first key (``{}`` if none).

    Every token is decrypted, current or not: a row the rotation passes as fine must really be
    readable. Raises :class:`~django_cloudsync.errors.UndecryptableToken` otherwise.
    """
    changes: dict[str, str] = {}
    pk = str(row.pk)  # once for both tokens
    for field, column in zip(TOKEN_FIELDS, TOKEN_COLUMNS, strict=True):
        ciphertext: str = getattr(row, column)
        if not ciphertext and field == "refresh_token":
            continue  # CloudSync issued no refresh token
        resealed = cipher.reseal(ciphertext, associated_data_of(pk, field))
        if resealed is not None:
            changes[column] = resealed
    return changes


def _verified_key_ids(
    cipher: TokenCipher, row: StoredRow, associated_data_of: Callable[[str, str], bytes]
) -> set[str]:
    """The ids of the keys that sealed ``row``'s tokens, after checking that each one decrypts."""
    key_ids = set()
    pk = str(row.pk)
    for field in TOKEN_FIELDS:
        ciphertext: str = getattr(row, f"{field}_ciphertext")
        if not ciphertext and field == "refresh_token":
            continue
        cipher.decrypt(ciphertext, associated_data_of(pk, field))  # only whether it opens matters
        key_ids.add(cipher.key_id_of(ciphertext))
    return key_ids


def _unreadable(row: StoredRow, exc: errors.UndecryptableToken) -> Unreadable:
    return Unreadable(pk=str(row.pk), account_id=row.account_id, reason=exc.message)
