"""``manage.py cloudsync_rotate_keys``: re-encrypt every stored token under the first key.

A key is rotated in three steps: put a new key first in ``CLOUDSYNC_ENCRYPTION_KEYS`` (keeping
the old one after it) and deploy; run this command; remove the old key and deploy again.

The command is safe to run while the site serves requests, and to run again after it was
interrupted:

* Rows are read in batches by primary key (keyset pagination), never all at once; each batch
  commits on its own, so an interruption loses at most the batch in flight.
* A row whose ciphertexts are already under the first key is skipped, so a second run finishes
  the job without re-encrypting anything twice.
* Each row is written with a compare-and-swap on ``version``: if a refresh wrote new tokens
  between our read and our write, our write matches no row, and the row is read again (the
  refresh's tokens are then usually under the first key already). ``version`` itself is left
  alone, because it means "new tokens", and the refresh logic compares it.
* A row that no configured key can decrypt is reported by id and left as it is, never dropped;
  the command then exits with status 1.

``--check`` changes nothing: it counts rows per key id, and the rows no key can decrypt.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.db import connections, router
from django.views.decorators.debug import sensitive_variables

from django_cloudsync import conf, errors
from django_cloudsync.crypto import TokenCipher
from django_cloudsync.models import CloudSyncToken
from django_cloudsync.tokens import with_lock_retries

DEFAULT_BATCH_SIZE = 500
#: How many times one row is tried when concurrent refreshes keep changing it under us.
MAX_ATTEMPTS_PER_ROW = 5
#: The columns the command reads: enough to re-encrypt and to name a row, nothing more.
ROW_FIELDS = ("id", "account_id", "version", "access_token_ciphertext", "refresh_token_ciphertext")
TOKEN_FIELDS = ("access_token", "refresh_token")

# What happened to one row.
ROTATED = "rotated"
CURRENT = "current"
GONE = "gone"
CONTENDED = "contended"


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
    stale: int = 0  # --check: rows with a ciphertext not under the first key
    limit_reached: bool = False

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


class ProgressBar:
    """A one-line progress bar, redrawn in place; only ever used on a terminal."""

    WIDTH = 30

    def __init__(self, out: OutputWrapper, total: int, label: str) -> None:
        self.out = out
        self.total = total
        self.label = label
        self.done = 0
        self.draw()

    def advance(self, rows: int) -> None:
        self.done += rows
        self.draw()

    def draw(self) -> None:
        total = max(self.total, self.done)  # rows may be added while we run
        filled = self.WIDTH if total == 0 else self.WIDTH * self.done // total
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.out.write(f"\r{self.label} [{bar}] {self.done}/{total} rows", ending="")
        self.out.flush()

    def finish(self) -> None:
        self.out.write("")  # end the line the bar was drawn on


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored CloudSync token with the first key of CLOUDSYNC_ENCRYPTION_KEYS, "
        "in batches, safely while the site runs; run it again to resume. With --check, only count "
        "rows per key. Exits with status 1 if a row cannot be decrypted by any configured key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check",
            action="store_true",
            help="Change nothing: count the rows under each key id, and the rows no configured key "
            "can decrypt (exit status 1 if there are any). Rows not yet under the first key are "
            "counted but do not change the exit status.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help=f"Rows read and committed together (default {DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--limit",
            type=int,
            default=None,
            help="Stop after re-encrypting this many rows (to rotate in slices); run again to continue.",
        )
        parser.add_argument(
            "--database",
            default=None,
            help="The database alias to work on (default: where CloudSyncToken is written).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size: int = options["batch_size"]
        limit: int | None = options["limit"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1.")
        database = options["database"] or router.db_for_write(CloudSyncToken)
        if database not in connections.settings:
            raise CommandError(f"There is no database {database!r} in DATABASES.")
        try:
            cipher = conf.cipher()
        except errors.ConfigurationError as exc:
            raise CommandError(str(exc)) from None  # the message never contains a key

        checking = bool(options["check"])
        tally = Tally()
        progress = None
        if self.stdout.isatty():
            total = CloudSyncToken.objects.using(database).count()
            progress = ProgressBar(self.stdout, total, "Checking" if checking else "Re-encrypting")
        try:
            for batch in self._batches(database, batch_size):
                if checking:
                    done = self._check_batch(cipher, batch)
                else:
                    done = self._rotate_batch(cipher, database, batch, limit=limit, tally=tally)
                tally.add(done)
                if progress is not None:
                    progress.advance(done.examined)
                if tally.limit_reached:
                    break
        except KeyboardInterrupt:
            if progress is not None:
                progress.finish()
            self._report(cipher, tally, checking=checking)
            raise CommandError(
                "Interrupted. Every batch before the interruption is saved; run the command again "
                "to finish (rows already under the first key are skipped).",
                returncode=130,
            ) from None
        if progress is not None:
            progress.finish()
        self._report(cipher, tally, checking=checking)
        self._exit_status(tally)

    # Reading: keyset pagination over the primary key, so memory stays at one batch.

    @staticmethod
    def _batches(database: str, batch_size: int) -> Iterator[list[CloudSyncToken]]:
        rows = CloudSyncToken.objects.using(database).only(*ROW_FIELDS).order_by("pk")
        last_pk = None
        while True:
            page = rows if last_pk is None else rows.filter(pk__gt=last_pk)
            batch = list(page[:batch_size])
            if batch:
                yield batch
            if len(batch) < batch_size:
                return
            last_pk = batch[-1].pk

    # --check.

    @staticmethod
    def _check_batch(cipher: TokenCipher, batch: list[CloudSyncToken]) -> Tally:
        tally = Tally(examined=len(batch))
        for row in batch:
            try:
                key_ids = _verified_key_ids(cipher, row)
            except errors.UndecryptableToken as exc:
                tally.unreadable.append(_unreadable(row, exc))
                continue
            tally.rows_per_key.update(key_ids)
            if key_ids != {cipher.primary_key_id}:
                tally.stale += 1
        return tally

    # Rotation.

    def _rotate_batch(
        self,
        cipher: TokenCipher,
        database: str,
        batch: list[CloudSyncToken],
        *,
        limit: int | None,
        tally: Tally,
    ) -> Tally:
        def rotate() -> Tally:
            # Rebuilt from scratch on each attempt: a batch retried after "database is locked"
            # was rolled back, and must not be counted twice.
            done = Tally()
            for row in batch:
                if limit is not None and tally.rotated + done.rotated >= limit:
                    done.limit_reached = True
                    break
                done.examined += 1
                try:
                    outcome = _rotate_row(cipher, database, row)
                except errors.UndecryptableToken as exc:
                    done.unreadable.append(_unreadable(row, exc))
                    continue
                if outcome == ROTATED:
                    done.rotated += 1
                elif outcome == CURRENT:
                    done.current += 1
                elif outcome == GONE:
                    done.gone += 1
                else:
                    done.contended.append(str(row.pk))
            return done

        # One transaction per batch (one commit, not one per row); on SQLite, waiting for the
        # write lock as long as a refresh holding it can take.
        return with_lock_retries(database, rotate)

    # Reporting.

    def _report(self, cipher: TokenCipher, tally: Tally, *, checking: bool) -> None:
        primary = cipher.primary_key_id
        for row in tally.unreadable:
            self.stderr.write(
                f"Row {row.pk} (CloudSync account {row.account_id}) cannot be decrypted by any "
                f"configured key: {row.reason}. It was left as it is."
            )
        if checking:
            self.stdout.write(f"Encrypting key: {primary}. Rows examined: {tally.examined}.")
            for kid in [*cipher.key_ids, *sorted(set(tally.rows_per_key) - set(cipher.key_ids))]:
                note = " (encrypting key)" if kid == primary else ""
                self.stdout.write(f"  key {kid}{note}: {tally.rows_per_key[kid]} rows")
            self.stdout.write(f"Rows to re-encrypt: {tally.stale}")
            self.stdout.write(f"Rows no configured key can decrypt: {len(tally.unreadable)}")
            return
        self.stdout.write(
            f"Re-encrypted {tally.rotated} rows under key {primary}; "
            f"{tally.current} were already under it (examined {tally.examined} rows)."
        )
        if tally.gone:
            self.stdout.write(f"{tally.gone} rows were deleted while the command ran.")
        if tally.limit_reached:
            self.stdout.write("Stopped at --limit: run the command again to continue.")
        elif not tally.unreadable and not tally.contended:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Every stored token is under key {primary}. Remove the other keys from "
                    "CLOUDSYNC_ENCRYPTION_KEYS once every process runs with this key first."
                )
            )

    @staticmethod
    def _exit_status(tally: Tally) -> None:
        problems = []
        if tally.unreadable:
            problems.append(
                f"{len(tally.unreadable)} rows cannot be decrypted by any key in "
                "CLOUDSYNC_ENCRYPTION_KEYS (listed above). Put back the key that sealed them, or "
                "forget those tokens in the admin (their users will have to authorize CloudSync again)."
            )
        if tally.contended:
            problems.append(
                f"{len(tally.contended)} rows changed too often while the command ran "
                f"({', '.join(tally.contended[:10])}); run the command again."
            )
        if problems:
            raise CommandError(" ".join(problems), returncode=1)


@sensitive_variables("plaintext")
def _resealed(cipher: TokenCipher, row: CloudSyncToken) -> dict[str, str]:
    """The new ciphertexts of ``row``'s tokens that are not under the first key (``{}`` if none).

    Every token is decrypted, current or not: a row the command passes as fine must really be
    readable. Raises :class:`~django_cloudsync.errors.UndecryptableToken` otherwise.
    """
    changes: dict[str, str] = {}
    for field in TOKEN_FIELDS:
        column = f"{field}_ciphertext"
        ciphertext: str = getattr(row, column)
        if not ciphertext and field == "refresh_token":
            continue  # CloudSync issued no refresh token
        associated_data = row.associated_data(field)
        plaintext = cipher.decrypt(ciphertext, associated_data)
        if not cipher.is_current(ciphertext):
            changes[column] = cipher.encrypt(plaintext, associated_data)
    return changes


def _rotate_row(cipher: TokenCipher, database: str, row: CloudSyncToken) -> str:
    """Re-encrypt one row, unless a concurrent write keeps beating us to it."""
    rows = CloudSyncToken.objects.using(database)
    for _ in range(MAX_ATTEMPTS_PER_ROW):
        changes = _resealed(cipher, row)
        if not changes:
            return CURRENT
        # Compare-and-swap: written only if no new tokens were stored since we read the row.
        # QuerySet.update() leaves version and updated_at alone, as it should.
        if rows.filter(pk=row.pk, version=row.version).update(**changes):
            return ROTATED
        fresh = rows.only(*ROW_FIELDS).filter(pk=row.pk).first()
        if fresh is None:
            return GONE
        row = fresh
    return CONTENDED


def _verified_key_ids(cipher: TokenCipher, row: CloudSyncToken) -> set[str]:
    """The ids of the keys that sealed ``row``'s tokens, after checking that each one decrypts."""
    key_ids = set()
    for field in TOKEN_FIELDS:
        ciphertext: str = getattr(row, f"{field}_ciphertext")
        if not ciphertext and field == "refresh_token":
            continue
        cipher.decrypt(ciphertext, row.associated_data(field))  # only whether it opens matters
        key_ids.add(cipher.key_id_of(ciphertext))
    return key_ids


def _unreadable(row: CloudSyncToken, exc: errors.UndecryptableToken) -> Unreadable:
    return Unreadable(pk=str(row.pk), account_id=row.account_id, reason=exc.message)
