from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests import routers


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


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str:
    """The alias the test runs on; the PostgreSQL case skips without CLOUDSYNC_TEST_POSTGRES_URL."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("on_postgres"))
    return "default"
