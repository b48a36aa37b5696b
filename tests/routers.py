"""A test-only router: every model goes to the alias the running test selected.

The PostgreSQL tests select ``postgres`` so the app's own code (which routes through
``django.db.router`` like any reusable app should) runs there unchanged.
"""

from __future__ import annotations

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
