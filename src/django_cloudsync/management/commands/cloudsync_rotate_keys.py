"""``manage.py cloudsync_rotate_keys``: re-encrypt every stored token under the first key.

A key is rotated in three steps: put a new key first in ``CLOUDSYNC_ENCRYPTION_KEYS`` (keeping
the old one after it) and deploy; run this command; remove the old key and deploy again.

The work, and why it is safe while the site runs and after an interruption, is
:mod:`django_cloudsync.rotation`'s; this command parses the options, draws a progress bar on a
terminal, reports the result, and exits with status 1 if a row no configured key can decrypt
(or one that changed too often) was left as it is.

``--check`` changes nothing: it counts rows per key id, and the rows no key can decrypt.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.db import connections

from django_cloudsync import errors
from django_cloudsync.rotation import DEFAULT_BATCH_SIZE, KeyRotation, Tally


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
        database = options["database"] or None
        if database is not None and database not in connections.settings:
            raise CommandError(f"There is no database {database!r} in DATABASES.")
        checking = bool(options["check"])
        try:
            rotation = KeyRotation(database=database, batch_size=batch_size, limit=limit, check=checking)
        except errors.ConfigurationError as exc:
            raise CommandError(str(exc)) from None  # the message never contains a key

        progress = None
        if self.stdout.isatty():
            label = "Checking" if checking else "Re-encrypting"
            progress = ProgressBar(self.stdout, rotation.row_count(), label)
        try:
            for done in rotation.batches():
                if progress is not None:
                    progress.advance(done.examined)
        except KeyboardInterrupt:
            if progress is not None:
                progress.finish()
            self._report(rotation, checking=checking, interrupted=True)
            raise CommandError(
                "Interrupted. Every batch before the interruption is saved; run the command again "
                "to finish (rows already under the first key are skipped).",
                returncode=130,
            ) from None
        if progress is not None:
            progress.finish()
        self._report(rotation, checking=checking)
        self._exit_status(rotation.result)

    # Reporting.

    def _report(self, rotation: KeyRotation, *, checking: bool, interrupted: bool = False) -> None:
        cipher, tally = rotation.cipher, rotation.result
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
        elif tally.complete and not interrupted:
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
