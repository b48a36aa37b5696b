from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from testsupport import routers


@pytest.fixture
def fake(cloudsync_settings: Any) -> Any:
    """The fake CloudSync, with the site's settings pointing at it."""
    return cloudsync_settings


@pytest.fixture
def on_postgres(request: pytest.FixtureRequest, settings: Any) -> Iterator[str]:
    """Route every model to the ``postgres`` alias for this test (skips without PostgreSQL)."""
    if "postgres" not in settings.DATABASES:
        pytest.skip(
            "PostgreSQL tests need CLOUDSYNC_TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/test)"
        )
    with routers.database("postgres") as alias:
        yield alias
