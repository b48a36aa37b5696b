"""A router for the tests and benchmarks: every model goes to the alias the running code selected.

django-cloudsync routes through ``django.db.router`` like any reusable app; selecting an alias
here moves allauth, the sessions and the app together, so the app's own code runs unchanged on
PostgreSQL in the PostgreSQL tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

selected_alias = "default"


class SelectableDatabaseRouter:
    def db_for_read(self, model: type, **hints: Any) -> str:
        return selected_alias

    def db_for_write(self, model: type, **hints: Any) -> str:
        return selected_alias

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return True


@contextmanager
def database(alias: str) -> Iterator[str]:
    """Send every query to ``alias`` inside the block."""
    global selected_alias
    previous, selected_alias = selected_alias, alias
    try:
        yield alias
    finally:
        selected_alias = previous
