"""A router for the tests and benchmarks: every model goes to the alias the running code selected.

django-cloudsync routes through ``django.db.router`` like any reusable app; selecting an alias
here moves allauth, the sessions and the app together, so the app's own code runs unchanged on
PostgreSQL and MariaDB/MySQL in the database-server tests and benchmarks. :func:`server_database`
is how both settings modules describe those servers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

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


#: engine -> (default user, default port) of the database servers the tests and benchmarks use.
SERVER_ENGINES = {
    "django.db.backends.postgresql": ("postgres", 5432),
    "django.db.backends.mysql": ("root", 3306),
}


def server_database(url: str, engine: str, *, name: str | None = None) -> dict[str, Any]:
    """A ``DATABASES`` entry for the server at ``url`` (``scheme://user:password@host:port/dbname``);
    ``name`` instead of the URL's database if given."""
    parts = urlsplit(url)
    default_user, default_port = SERVER_ENGINES[engine]
    entry: dict[str, Any] = {
        "ENGINE": engine,
        "NAME": name or parts.path.lstrip("/") or "test",
        "USER": parts.username or default_user,
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or default_port),
    }
    if engine == "django.db.backends.mysql":
        # utf8mb4 (MySQL's "utf8" holds three bytes a character at most), whatever the server's
        # default. Django's own isolation level (READ COMMITTED) stays, as on a site that
        # follows Django's notes on MySQL.
        entry["OPTIONS"] = {"charset": "utf8mb4"}
    return entry
