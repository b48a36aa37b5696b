"""``manage.py cloudsync_generate_key``: print a new key for ``CLOUDSYNC_ENCRYPTION_KEYS``."""

from typing import Any

from django.core.management.base import BaseCommand

from django_cloudsync.crypto import generate_key


class Command(BaseCommand):
    help = "Print a new random key for CLOUDSYNC_ENCRYPTION_KEYS."

    # This is the command that check E001 (no key) and E002/E003 (an unusable key) send a site
    # to: it must run while those checks fail. It reads no setting and touches no database.
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(generate_key())
