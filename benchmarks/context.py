"""What every benchmark is handed: the fake CloudSync, the databases, and how hard to try."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django_cloudsync.testing import FakeCloudSync, FakeCloudSyncServer


@dataclass
class Context:
    server: FakeCloudSyncServer
    workdir: Path
    #: (label, alias or ``None`` if there is none, and then why not, shown in the skipped rows)
    #: for each database server: PostgreSQL, MariaDB/MySQL.
    servers: list[tuple[str, str | None, str]]
    quick: bool
    rotation_rows: int

    @property
    def fake(self) -> FakeCloudSync:
        return self.server.fake

    def databases(self) -> list[tuple[str, str | None, str]]:
        """(label, alias or ``None`` if skipped, skip reason) for SQLite, then each server."""
        return [("SQLite", "default", ""), *self.servers]
