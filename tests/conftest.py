from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from tests.helpers import RESPONSE_LIMIT
from testsupport import routers

# The property tests (tests/hostile/) take their example counts from these profiles: about a hundred
# examples each while working, a thousand in CI (HYPOTHESIS_PROFILE=ci). Loaded here, before any
# test module is imported, because a hypothesis ``settings`` object copies the counts of the profile
# loaded when it is created.
hypothesis_settings.register_profile("default", max_examples=100)
hypothesis_settings.register_profile("ci", max_examples=1000)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "default")


@pytest.fixture
def fake(cloudsync_settings: Any) -> Any:
    """The fake CloudSync, with the site's settings pointing at it."""
    return cloudsync_settings


@pytest.fixture
def hostile_settings(settings: Any, fake: Any) -> Any:
    """The fake, a small response limit (``RESPONSE_LIMIT``), and no retries: one HTTP call per
    answer, so that each scripted answer is the one the code under test reads."""
    settings.CLOUDSYNC_MAX_RESPONSE_BYTES = RESPONSE_LIMIT
    settings.CLOUDSYNC_MAX_RETRIES = 0
    return fake


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
