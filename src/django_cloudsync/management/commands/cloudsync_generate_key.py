from typing import Any

from django.core.management.base import BaseCommand

from django_cloudsync.crypto import generate_key


class Command(BaseCommand):
    help = "Print a new random key for CLOUDSYNC_ENCRYPTION_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(generate_key())
