"""The cost of the encryption: sealing and opening one token pair, as the app does it."""

from __future__ import annotations

import secrets
import uuid

from django_cloudsync.models import CloudSyncToken

from .context import Context
from .measure import median_seconds
from .report import Row


def measure_pair(quick: bool) -> tuple[float, float, int, int]:
    """(seconds to seal and open one token pair, seconds to open one access token, runs, calls per run)."""
    # Tokens shaped like CloudSync's (a prefix and 43 characters), in an unsaved row: the
    # ciphertexts are bound to its id and field names as they are in the database.
    access_token = "at_test_" + secrets.token_urlsafe(32)
    refresh_token = "rt_test_" + secrets.token_urlsafe(32)
    row = CloudSyncToken(id=uuid.uuid4(), account_id="usr_bench_crypto")

    def seal_and_open() -> None:
        row.set_tokens(access_token=access_token, refresh_token=refresh_token, expires_in=3600, scope=None)
        if row.access_token() != access_token or row.refresh_token() != refresh_token:
            raise AssertionError("a token did not survive encryption")

    def open_access_token() -> None:
        row.access_token()

    number, repeat = (500, 5) if quick else (2000, 9)
    pair = median_seconds(seal_and_open, number=number, repeat=repeat)
    one = median_seconds(open_access_token, number=number, repeat=repeat)
    return pair, one, repeat, number


def run(context: Context) -> list[Row]:
    pair, one, repeat, number = measure_pair(context.quick)
    return [
        Row(
            figure="encrypt + decrypt of one token pair (AES-256-GCM, bound to row and field)",
            target="report µs",
            app=f"{pair * 1e6:.1f} µs",
            handrolled="0 (stored in plaintext)",
            notes=[
                "CloudSyncToken.set_tokens() (two encryptions) then access_token() and refresh_token() "
                f"(two decryptions), median of {repeat} runs of {number}. Decrypting the access token "
                f"alone, as each API-using request does: {one * 1e6:.1f} µs."
            ],
        )
    ]
